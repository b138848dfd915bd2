"""What bench_wire's two echo servers share: stop signals and the command line.

Both run as subprocesses of ``bench/bench_wire.py`` (``python bench/_bare_echo.py``), so this
module is imported from the script's own directory.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

Serve = Callable[[str, int, asyncio.Event], Coroutine[Any, Any, None]]


def stop_event(watch_stdin: bool) -> asyncio.Event:
    """An event set on SIGTERM or SIGINT and, with ``watch_stdin``, when stdin reaches end of
    file (the parent died or closed the pipe, however it ended). Call inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        fd = sys.stdin.fileno()

        def readable() -> None:
            if not os.read(fd, 4096):
                loop.remove_reader(fd)
                stop.set()

        loop.add_reader(fd, readable)
    return stop


def main(serve: Serve, description: str, argv: list[str] | None = None,
         profile_env: str | None = None) -> int:
    """Parse ``--host --port --exit-on-stdin-eof --profile`` and run ``serve`` until stopped.

    ``serve(host, port, stop)`` binds, prints its first line, and returns once ``stop`` is set.
    ``--profile PATH`` (or the variable ``profile_env``) writes cProfile stats on exit.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="also stop when stdin closes (so a parent that dies takes us along)")
    default = os.environ.get(profile_env) if profile_env else None
    parser.add_argument("--profile", metavar="PATH", default=default or None,
                        help="run under cProfile and write the stats to PATH on exit"
                             + (f" (default: ${profile_env})" if profile_env else ""))
    args = parser.parse_args(argv)

    async def run() -> None:
        await serve(args.host, args.port, stop_event(args.exit_on_stdin_eof))

    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(run())
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0
