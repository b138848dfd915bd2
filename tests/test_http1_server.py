"""The miner's HTTP/1.1 transport on real sockets: framing, keep-alive, limits and timeouts.

A small application echoes each request's method, path and body; tests talk to it with raw bytes
over asyncio streams so that every byte on the wire is the test's choice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import unpack
from protocol.http1_server import (
    Handler,
    HttpConfig,
    HttpServer,
    Request,
    Response,
    StreamWriter,
)
from tests.mutations import random_or_mutated

HANG_S = 10.0


async def echo(request: Request) -> Response | StreamWriter:
    """Answer with method, path and body; ``/stream`` streams three chunks; ``/slow`` waits."""
    body = b""
    while chunk := await request.body.read(65536):
        body += chunk
    if request.path == "/slow":
        await asyncio.sleep(30)
    if request.path == "/stream":
        writer = await request.start_stream(200, {"Content-Type": "text/plain"})
        for part in (b"one ", b"two ", b"three"):
            await writer.write(part)
        return writer
    return Response(200, b"%s %s %s" % (request.method.encode(), request.path.encode(), body),
                    {"Content-Type": "text/plain"})


DEFAULT = HttpConfig()


@contextlib.asynccontextmanager
async def serving(config: HttpConfig = DEFAULT, handler: Handler = echo) -> AsyncIterator[int]:
    server = HttpServer(handler, config)
    port = await server.start("127.0.0.1", 0)
    try:
        yield port
    finally:
        await server.aclose()


async def exchange(port: int, data: bytes, *, wait_s: float = 2.0) -> bytes:
    """Send ``data``, then read until the server closes or ``wait_s`` passes quietly."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        while True:
            async with asyncio.timeout(wait_s):
                chunk = await reader.read(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as port:
        answer = await exchange(port, post("/a", b"1") + post("/b", b"22"), wait_s=0.5)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"POST /a 1") < answer.index(b"POST /b 22")


async def test_chunked_request_bodies_and_streamed_answers() -> None:
    request = (b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
    async with serving() as port:
        answer = await exchange(port, request, wait_s=0.5)
    assert b"Transfer-Encoding: chunked" in answer
    assert answer.endswith(b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n")


async def test_expect_continue_and_head() -> None:
    async with serving() as port:
        answer = await exchange(port, post("/x", b"hi", "Expect: 100-continue\r\n"), wait_s=0.5)
        head = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", wait_s=0.5)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert answer.endswith(b"POST /x hi")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert head.endswith(b"Content-Length: 8\r\n\r\n")  # the length, not the body


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "malformed"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "malformed"),
    (b"POST /x HTTP/1.1\r\nX-Pad: " + b"a" * 40_000 + b"\r\n\r\n", 413, "too_large"),
    (b"POST /x HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 413, "too_large"),
    (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 413, "too_large"),
    (b"POST /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nab",
     400, "malformed"),
    (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", 400, "malformed"),
], ids=["garbage", "two-lengths", "huge-header", "many-headers", "long-url",
        "upgrade-with-body", "connect"])
async def test_refused_requests_get_a_typed_error_and_the_connection_closes(
        data: bytes, status: int, code: str) -> None:
    async with serving() as port:
        answer = await exchange(port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"Connection: close" in head
    assert unpack(body)["code"] == code


async def test_an_upgrade_offer_is_declined_by_answering_in_http_1_1() -> None:
    """curl --http2 on http:// offers h2c; the answer comes in HTTP/1.1, then the connection
    closes (llhttp reads nothing after an upgrade head)."""
    request = (b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
    async with serving() as port:
        answer = await exchange(port, request, wait_s=HANG_S)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"GET /health ")


async def test_a_head_near_the_limit_in_many_small_reads_is_served() -> None:
    """Bytes of a head are counted once, however many reads bring them."""
    head = post("/x", b"ok", "".join(f"X-{i}: {'v' * 200}\r\n" for i in range(90)))
    assert 17_000 < len(head) < 32 * 1024
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for at in range(0, len(head), 1000):
            writer.write(head[at:at + 1000])
            await writer.drain()
            await asyncio.sleep(0.005)
        async with asyncio.timeout(HANG_S):
            answer = await reader.read(65536)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]


async def test_a_head_that_never_ends_is_refused() -> None:
    async with serving() as port:
        answer = await exchange(port, b"POST /x HTTP/1.1\r\nX-Pad: " + b"a" * 40_000)
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_a_slow_head_and_an_idle_connection_are_closed() -> None:
    config = HttpConfig(head_timeout_s=0.2, keepalive_timeout_s=0.4)
    async with serving(config) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await exchange(port, b"POST /x HTTP/1.1\r\nHost:", wait_s=HANG_S) == b""
        assert 0.15 < loop.time() - started < 2.0
        started = loop.time()
        answer = await exchange(port, post("/x"), wait_s=HANG_S)
        assert answer.endswith(b"POST /x ")
        assert 0.35 < loop.time() - started < 2.0  # answered, then closed once idle


async def test_a_closed_connection_cancels_its_handler() -> None:
    cancelled = asyncio.Event()

    async def waits(request: Request) -> Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200, b"", {})

    async with serving(handler=waits) as port:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/x"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), HANG_S)


async def test_a_failing_application_is_a_typed_500() -> None:
    async def fails(request: Request) -> Response:
        raise RuntimeError("boom")

    async with serving(handler=fails) as port:
        answer = await exchange(port, post("/x"), wait_s=0.5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    assert unpack(body)["code"] == "handler_failed"
    assert b"boom" not in body


async def test_stream_writes_wait_for_a_peer_that_does_not_read() -> None:
    sent = 0

    async def floods(request: Request) -> StreamWriter:
        nonlocal sent
        writer = await request.start_stream(200, {})
        while sent < 64 << 20:
            await writer.write(b"x" * 65536)
            sent += 65536
        return writer

    async with serving(handler=floods) as port:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/x"))
        await asyncio.sleep(0.5)
        assert sent < 16 << 20  # held back by the unread socket, not buffered in memory
        writer.close()


def requests() -> st.SearchStrategy[bytes]:
    """Random bytes, or valid ones damaged."""
    return random_or_mutated([post("/x", b"hello", "X-A: b\r\n")])


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=requests())
def test_any_bytes_get_an_answer_or_a_close_never_a_hang_or_a_500(data: bytes) -> None:
    config = HttpConfig(head_timeout_s=0.3, keepalive_timeout_s=0.3)

    async def run() -> bytes:
        async with serving(config) as port:
            return await exchange(port, data, wait_s=HANG_S)

    answer = asyncio.run(run())
    for status in (int(line.split(b" ")[1]) for line in answer.split(b"\r\n")
                   if line.startswith(b"HTTP/1.1 ")):
        assert status in (100, 200, 400, 413), answer[:300]
