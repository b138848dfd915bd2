"""The ceiling for bench_wire: bare aiohttp that msgpack-decodes each body and sends it back.

No signing, no checks, no metrics: just what any aiohttp + msgpack service pays per request.
Prints the bound port as the first line of stdout, then serves until SIGTERM or SIGINT
(or, with ``--exit-on-stdin-eof``, until stdin closes).

    python bench/_bare_echo.py [--host H] [--port P] [--profile PATH] [--exit-on-stdin-eof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import signal
import sys

import msgpack
from aiohttp import web

MSGPACK_TYPE = "application/msgpack"


async def echo(request: web.Request) -> web.Response:
    """Decode the msgpack body and encode it back."""
    value = msgpack.unpackb(await request.read(), raw=False)
    return web.Response(body=msgpack.packb(value, use_bin_type=True),
                        headers={"Content-Type": MSGPACK_TYPE})


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when stdin reaches end of file: the parent died or closed the pipe, however it ended."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096):
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


async def serve(host: str, port: int, watch_stdin: bool = False) -> None:
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(bound, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        _stop_on_stdin_eof(loop, stop)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="also stop when stdin closes (so a parent that dies takes us along)")
    parser.add_argument("--profile", metavar="PATH",
                        help="run under cProfile and write the stats to PATH on exit")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(serve(args.host, args.port, args.exit_on_stdin_eof))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
