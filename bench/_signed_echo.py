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

import asyncio
import hashlib
import sys

import _serving

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


async def serve(host: str, port: int, stop: asyncio.Event) -> None:
    """Serve the signed echo, print ``PORT ADDRESS``, return once ``stop`` is set."""
    server = MinerServer(Keypair(MINER_SEED), bench_config(host, port))
    add_echo_routes(server)
    async with server:
        print(server.port, server.address, flush=True)
        await stop.wait()


if __name__ == "__main__":
    sys.exit(_serving.main(serve, __doc__.splitlines()[0], profile_env=PROFILE_ENV))
