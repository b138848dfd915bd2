"""Process-wide logging for the services: plain text (default) or one JSON object per line.

Every long-running command (``ensemble chain serve``, ``ensemble miner run|echo``,
``ensemble validator run``, ``ensemble router serve``) calls :func:`add_log_options` on its
parser and :func:`configure_logging` first thing in its handler, so all of them log the same way:

* ``text``: ``2025-01-01 12:00:00,123 INFO ensemble.chain block 42 committed``;
* ``json``: ``{"ts": "2025-01-01T12:00:00.123000+00:00", "level": "INFO",
  "logger": "ensemble.chain", "msg": "block 42 committed"}`` plus ``"exc"`` (the formatted
  traceback) when the record carries an exception. Ready for ``jq`` and log shippers.

Logs go to stderr; stdout stays free for the commands' ready lines. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "TEXT_FORMAT", "JsonFormatter", "add_log_options",
           "configure_logging"]

#: The ``--log-format`` choices.
LOG_FORMATS: tuple[str, ...] = ("text", "json")
#: The ``--log-level`` choices.
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The ``text`` format's layout.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``msg``, and ``exc`` (traceback text) or ``stack`` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(fmt: str = "text", level: str = "INFO",
                      stream: IO[str] | None = None) -> None:
    """Route the root logger to ``stream`` (default stderr) in format ``fmt`` at ``level``.

    Replaces any handlers already on the root logger, so calling it again (tests, a command
    run twice in one process) reconfigures rather than duplicating lines.

    Raises:
        ValueError: ``fmt`` is not ``text`` or ``json``, or ``level`` is not a level name.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-format {text,json}`` and ``--log-level LEVEL`` to a service's parser."""
    group = parser.add_argument_group("logging")
    group.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="log lines on stderr as plain text or one JSON object per line "
                            "(default text)")
    group.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO",
                       metavar="LEVEL",
                       help=f"least severe level logged: {', '.join(LOG_LEVELS)} "
                            f"(default INFO)")
