"""The ceiling for bench_wire: bare aiohttp that msgpack-decodes each body and sends it back.

No signing, no checks, no metrics: just what any aiohttp + msgpack service pays per request.
With ``ENSEMBLE_BENCH_TRANSPORT=http1`` the same echo is served by the miner's own HTTP/1.1
transport (``protocol/http1_server.py``) instead: what signing costs over the transports the
signed side really uses. Prints the bound port as the first line of stdout, then serves until
SIGTERM or SIGINT (or, with ``--exit-on-stdin-eof``, until stdin closes).

    python bench/_bare_echo.py [--host H] [--port P] [--profile PATH] [--exit-on-stdin-eof]
"""

from __future__ import annotations

import asyncio
import os
import sys

import _serving
import msgpack
from aiohttp import web

from protocol.http1_server import HttpServer, Request, Response

MSGPACK_TYPE = "application/msgpack"


async def echo(request: web.Request) -> web.Response:
    """Decode the msgpack body and encode it back."""
    value = msgpack.unpackb(await request.read(), raw=False)
    return web.Response(body=msgpack.packb(value, use_bin_type=True),
                        headers={"Content-Type": MSGPACK_TYPE})


async def echo_http1(request: Request) -> Response:
    """The same echo on the miner's transport."""
    body = b""
    while chunk := await request.body.read(1 << 20):
        body += chunk
    value = msgpack.unpackb(body, raw=False)
    return Response(200, msgpack.packb(value, use_bin_type=True), {"Content-Type": MSGPACK_TYPE})


async def serve_http1(host: str, port: int, stop: asyncio.Event) -> None:
    """Serve :func:`echo_http1` on ``host:port``, print the bound port, return once stopped."""
    server = HttpServer(echo_http1)
    print(await server.start(host, port), flush=True)
    try:
        await stop.wait()
    finally:
        await server.aclose()


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
    chosen = serve_http1 if os.environ.get("ENSEMBLE_BENCH_TRANSPORT") == "http1" else serve
    sys.exit(_serving.main(chosen, __doc__.splitlines()[0]))
