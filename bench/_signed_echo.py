"""The signed side of bench_wire: a MinerServer with the echo routes and bench-friendly limits.

The miner key comes from a fixed seed so the client knows its address in advance. The per-caller
rate limit and the admission limits are raised far above what the benchmark can reach, so they
never throttle; everything else (freshness, replay memory, signature checks, receipts, metrics)
is the production pipeline.

Prints ``PORT ADDRESS`` as the first line of stdout, then serves until SIGTERM or SIGINT
(or, with ``--exit-on-stdin-eof``, until stdin closes).

    python bench/_signed_echo.py [--host H] [--port P] [--profile PATH] [--exit-on-stdin-eof]

``--profile PATH`` (or the environment variable ``ENSEMBLE_BENCH_PROFILE=PATH``) runs the server
under cProfile and writes the stats to PATH when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import os
import signal
import sys

from miners.admission import AdmissionConfig
from miners.echo import add_echo_routes
from miners.server import MinerServer, ServerConfig
from protocol.keys import Keypair
from protocol.ratelimit import RateLimitConfig

#: Fixed miner seed: the benchmark derives the same key to address its requests.
MINER_SEED = hashlib.sha256(b"ensemblenet/bench/miner").digest()
#: Far above anything one client on loopback can reach.
BENCH_RATE_LIMIT = RateLimitConfig(rate=1e9, burst=1e9)
BENCH_ADMISSION = AdmissionConfig(max_concurrent=4096, max_queue=16_384)
PROFILE_ENV = "ENSEMBLE_BENCH_PROFILE"


def bench_config(host: str = "127.0.0.1", port: int = 0) -> ServerConfig:
    """The server configuration the benchmark runs with."""
    return ServerConfig(host=host, port=port, rate_limit=BENCH_RATE_LIMIT,
                        admission=BENCH_ADMISSION)


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when stdin reaches end of file: the parent died or closed the pipe, however it ended."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096):
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


async def serve(host: str, port: int, watch_stdin: bool = False) -> None:
    server = MinerServer(Keypair(MINER_SEED), bench_config(host, port))
    add_echo_routes(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        _stop_on_stdin_eof(loop, stop)
    async with server:
        print(server.port, server.address, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="also stop when stdin closes (so a parent that dies takes us along)")
    parser.add_argument("--profile", metavar="PATH", default=os.environ.get(PROFILE_ENV) or None,
                        help=f"run under cProfile and write the stats to PATH on exit "
                             f"(default: ${PROFILE_ENV})")
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
