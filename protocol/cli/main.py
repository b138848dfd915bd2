"""Entry point of the ``ensemble`` command.

Each command group lives in its own module exposing ``register(subparsers)``; a handler takes the
parsed namespace and returns the process exit code. Groups are imported when the parser is built,
never at package import, so ``import protocol`` stays free of side effects.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from protocol import __version__
from protocol.errors import EnsembleError

#: Modules that contribute command groups, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "protocol.cli.wallet",
    "miners.cli",
    "validators.cli",
    "router.cli",
    "protocol.cli.localnet",
    "protocol.cli.chain",
    "protocol.cli.ledger_cmds",
    "protocol.cli.status",
)

EXIT_USAGE = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    """Return the full ``ensemble`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="ensemble",
        description="Ensemblenet: run miners and validators, route prompts, operate the ledger.",
        epilog="Run 'ensemble COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"ensemble {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args))
    except EnsembleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Every server command binds a port; the same mistake gets the same plain advice.
        print(f"error: {exc.strerror or exc}: the port is taken; stop what uses it or pick "
              "another port (--port, or --metrics-port for a validator)", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
