"""The ceiling for bench_wire: bare aiohttp that msgpack-decodes each body and sends it back.

No signing, no checks, no metrics: just what any aiohttp + msgpack service pays per request.
Prints the bound port as the first line of stdout, then serves until SIGTERM or SIGINT
(or, with ``--exit-on-stdin-eof``, until stdin closes).

    python bench/_bare_echo.py [--host H] [--port P] [--profile PATH] [--exit-on-stdin-eof]
"""

from __future__ import annotations

import asyncio
import sys

import _serving
import msgpack
from aiohttp import web

MSGPACK_TYPE = "application/msgpack"


async def echo(request: web.Request) -> web.Response:
    """Decode the msgpack body and encode it back."""
    value = msgpack.unpackb(await request.read(), raw=False)
    return web.Response(body=msgpack.packb(value, use_bin_type=True),
                        headers={"Content-Type": MSGPACK_TYPE})


async def serve(host: str, port: int, stop: asyncio.Event) -> None:
    """Serve the echo on ``host:port``, print the bound port, return once ``stop`` is set."""
    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(bound, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(_serving.main(serve, __doc__.splitlines()[0]))
