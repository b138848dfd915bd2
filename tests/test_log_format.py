"""Service logging: plain text by default, one JSON object per line with --log-format json."""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from protocol.logging_setup import TEXT_FORMAT, add_log_options, configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """configure_logging rewires the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_parse_and_carry_the_fields() -> None:
    """Each record is one JSON object: ts (UTC ISO 8601), level, logger, msg."""
    out = io.StringIO()
    configure_logging("json", "DEBUG", stream=out)
    logging.getLogger("ensemble.test").info("block %d committed", 42)
    logging.getLogger("ensemble.other").debug('quote " and\nnewline')
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "ensemble.test"
    assert first["msg"] == "block 42 committed"
    assert "exc" not in first
    ts = datetime.fromisoformat(first["ts"])
    assert ts.utcoffset() == timedelta(0)
    assert second["msg"] == 'quote " and\nnewline'
    assert second["level"] == "DEBUG"


def test_json_includes_the_exception_text() -> None:
    """log.exception puts the formatted traceback under 'exc'."""
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise RuntimeError("boom in the miner")
    except RuntimeError:
        logging.getLogger("ensemble.miner").exception("request failed")
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["msg"] == "request failed"
    assert "Traceback" in entry["exc"]
    assert "RuntimeError: boom in the miner" in entry["exc"]


def test_text_is_the_default_and_level_filters() -> None:
    """Without arguments: text lines at INFO; DEBUG is dropped; reconfiguring replaces."""
    out = io.StringIO()
    configure_logging(stream=io.StringIO())
    configure_logging(stream=out)  # a second call replaces the handler, no duplicate lines
    log = logging.getLogger("ensemble.chain")
    log.debug("hidden")
    log.warning("node %s started", "n1")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" WARNING ensemble.chain node n1 started")
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    assert "%(asctime)s" in TEXT_FORMAT


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml")
    with pytest.raises(ValueError, match="log level"):
        configure_logging("text", "LOUD")


def test_parser_options() -> None:
    """--log-format text|json and --log-level (case-insensitive) with text/INFO defaults."""
    parser = argparse.ArgumentParser()
    add_log_options(parser)
    args = parser.parse_args([])
    assert (args.log_format, args.log_level) == ("text", "INFO")
    args = parser.parse_args(["--log-format", "json", "--log-level", "debug"])
    assert (args.log_format, args.log_level) == ("json", "DEBUG")
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "yaml"])


@pytest.mark.parametrize("argv", [
    ["chain", "serve", "--db", "x.db", "--log-format", "json"],
    ["miner", "echo", "--dev-seed", "00" * 32, "--log-format", "json"],
    ["miner", "run", "--netuid", "1", "--model", "echo-math", "--log-format", "json"],
    ["validator", "run", "--netuid", "1", "--log-format", "json"],
    ["router", "serve", "--netuid", "1", "--log-format", "json", "--log-level", "warning"],
])
def test_every_service_takes_the_log_options(argv: list[str]) -> None:
    from protocol.cli.main import build_parser  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    assert args.log_format == "json"
    assert args.log_level in ("INFO", "WARNING")
