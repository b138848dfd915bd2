"""The query client's HTTP/1.1 pool against real sockets that answer exactly what a test scripts.

Each test starts an asyncio TCP server on 127.0.0.1 that reads one request (head and
``Content-Length`` body) and writes scripted bytes back, so framing, limits, keep-alive and
hostile answers are exercised on a real connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import http1
from protocol.errors import ConfigError, ConnectFailed, RemoteError
from tests.mutations import random_or_mutated

HANG_S = 10.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@dataclass
class Script:
    """What the scripted server does: ``answer(n)`` gives the bytes for its n-th request."""

    answer: Callable[[int], bytes]
    close_after: bool = False  # close the connection after each answer
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    """Serve ``script`` on an ephemeral port; yield its URL."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                script.requests.append(request)
                writer.write(script.answer(len(script.requests)))
                await writer.drain()
                if script.close_after:
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def fetch(pool: http1.Pool, url: str, cap: int = 1 << 20) -> tuple[int, bytes]:
    """One request; the status and whole body."""
    async with asyncio.timeout(HANG_S):
        response = await pool.request(url, "/v1/echo", b"X-Test: 1\r\n", b"body", 2.0)
        async with response:
            return response.status, await response.read(cap)


async def test_the_request_is_framed_as_spec_section_5_says() -> None:
    script = Script(lambda n: OK)
    async with scripted(script) as url:
        pool = http1.Pool()
        assert await fetch(pool, url) == (200, b"hello")
        await pool.aclose()
    first = script.requests[0]
    assert first.startswith(b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 4\r\n" in first
    assert first.endswith(b"X-Test: 1\r\n\r\nbody")


async def test_headers_are_looked_up_without_case_and_first_wins() -> None:
    answer = b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    async with scripted(Script(lambda n: answer)) as url:
        pool = http1.Pool()
        response = await pool.request(url, "/v1/echo", b"", b"", 2.0)
        assert response.status == 204
        assert response.headers["X-a"] == "1"
        assert "x-A" in response.headers
        assert await response.read(10) == b""
        response.release()
        await pool.aclose()


@pytest.mark.parametrize("answer", [
    OK,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
], ids=["content-length", "chunked", "interim-100"])
async def test_framings_give_the_same_body_and_keep_the_connection(answer: bytes) -> None:
    script = Script(lambda n: answer)
    async with scripted(script) as url:
        pool = http1.Pool()
        assert await fetch(pool, url) == (200, b"hello")
        assert await fetch(pool, url) == (200, b"hello")
        await pool.aclose()
    assert script.connections == 1


async def test_answer_without_length_ends_with_the_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"
    script = Script(lambda n: answer, close_after=True)
    async with scripted(script) as url:
        pool = http1.Pool()
        assert await fetch(pool, url) == (200, b"hello")
        assert await fetch(pool, url) == (200, b"hello")
        await pool.aclose()
    assert script.connections == 2  # not reused: its end was the body's end


@pytest.mark.parametrize(("answer", "message"), [
    (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n", "exceed"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n", "more than 100"),
    (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", "closed before"),
    (OK + OK, "more than one answer"),
    (b"", "closed before"),
    (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
     "switched protocols"),
], ids=["huge-head", "many-headers", "bad-status", "cut-body", "two-answers", "nothing",
        "upgrade"])
async def test_hostile_answers_are_connect_failures(answer: bytes, message: str) -> None:
    async with scripted(Script(lambda n: answer, close_after=True)) as url:
        pool = http1.Pool()
        with pytest.raises(ConnectFailed, match=message):
            await fetch(pool, url)
        await pool.aclose()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
], ids=["declared", "chunked"])
async def test_bodies_above_the_cap_are_refused(answer: bytes) -> None:
    async with scripted(Script(lambda n: answer)) as url:
        pool = http1.Pool()
        with pytest.raises(RemoteError) as info:
            await fetch(pool, url, cap=8)
        assert (info.value.code, info.value.status) == ("too_large", 200)
        await pool.aclose()


async def test_a_reused_connection_closed_by_the_server_is_retried_once() -> None:
    """The server drops the keep-alive connection after answering (without saying so)."""
    script = Script(lambda n: OK, close_after=True)
    async with scripted(script) as url:
        pool = http1.Pool()
        assert await fetch(pool, url) == (200, b"hello")
        await asyncio.sleep(0.05)  # the close may or may not have been seen: both must work
        assert await fetch(pool, url) == (200, b"hello")
        await pool.aclose()
    assert script.connections == 2


async def test_a_connection_that_sent_too_much_is_not_reused() -> None:
    script = Script(lambda n: OK + b"HTTP/1.1 200 OK\r\n" if n == 1 else OK)
    async with scripted(script) as url:
        pool = http1.Pool()
        with pytest.raises(ConnectFailed, match="more than one answer"):
            await fetch(pool, url)
        assert await fetch(pool, url) == (200, b"hello")  # on a new connection
        await pool.aclose()


async def test_the_pool_limit_makes_requests_wait_their_turn() -> None:
    release = asyncio.Event()
    script = Script(lambda n: OK)

    async def slow(pool: http1.Pool, url: str) -> tuple[int, bytes]:
        response = await pool.request(url, "/v1/echo", b"", b"", 2.0)
        await release.wait()
        async with response:
            return response.status, await response.read(100)

    async with scripted(script) as url:
        pool = http1.Pool(http1.PoolConfig(max_connections=1))
        first = asyncio.create_task(slow(pool, url))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(fetch(pool, url))
        cancelled = asyncio.create_task(fetch(pool, url))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert len(script.requests) == 1
        cancelled.cancel()
        release.set()
        assert await first == (200, b"hello")
        assert await waiting == (200, b"hello")
        await pool.aclose()
    assert script.connections == 1


async def test_a_full_pool_closes_an_idle_connection_to_reach_another_origin() -> None:
    one, two = Script(lambda n: OK), Script(lambda n: OK)
    async with scripted(one) as url_one, scripted(two) as url_two:
        pool = http1.Pool(http1.PoolConfig(max_connections=1))
        assert await fetch(pool, url_one) == (200, b"hello")
        assert await fetch(pool, url_two) == (200, b"hello")
        assert await fetch(pool, url_one) == (200, b"hello")
        await pool.aclose()
    assert (one.connections, two.connections) == (2, 1)


async def test_idle_connections_expire() -> None:
    script = Script(lambda n: OK)
    async with scripted(script) as url:
        pool = http1.Pool(http1.PoolConfig(max_idle_s=0.05))
        await fetch(pool, url)
        await asyncio.sleep(0.1)
        await fetch(pool, url)
        await pool.aclose()
    assert script.connections == 2


async def test_reading_pauses_while_the_caller_does_not_consume() -> None:
    size = 4 << 20
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size
    async with scripted(Script(lambda n: answer)) as url:
        pool = http1.Pool()
        response = await pool.request(url, "/v1/echo", b"", b"", 2.0)
        await asyncio.sleep(0.2)  # the server writes as fast as it can meanwhile
        held = response._conn._buffered
        assert held <= http1.READ_HIGH_WATER + 512 * 1024  # one socket read past the mark
        assert len(await response.read(size)) == size
        response.release()
        await pool.aclose()


async def test_refused_connect_and_a_closed_pool() -> None:
    pool = http1.Pool()
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await pool.request("http://127.0.0.1:1", "/v1/echo", b"", b"", 2.0)
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.request("http://127.0.0.1:1", "/v1/echo", b"", b"", 2.0)


@pytest.mark.parametrize(("url", "origin"), [
    ("http://miner.example:8091", ("http", "miner.example", 8091, "miner.example:8091", "")),
    ("https://miner.example/base/", ("https", "miner.example", 443, "miner.example", "/base")),
    ("http://[::1]:80", ("http", "::1", 80, "[::1]:80", "")),
])
def test_origins(url: str, origin: tuple[str, str, int, str, str]) -> None:
    o = http1.parse_origin(url)
    assert (o.scheme, o.host, o.port, o.authority, o.prefix) == origin


@pytest.mark.parametrize("url", [
    "ftp://miner", "http://", "miner:8091", "http://m:99999", "http://m/a b", "http://m/?q=1",
    "http://user@m", "http://m/\r\nX-Injected: 1",
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConnectFailed):
        http1.parse_origin(url)


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        http1.PoolConfig(max_connections=0)


_VALID = [OK, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]


def answers() -> st.SearchStrategy[bytes]:
    """Random bytes, or valid ones damaged."""
    return random_or_mutated(_VALID)


def _run(make: Callable[[], Awaitable[object]]) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(HANG_S):
            return await make()
    return asyncio.run(bounded())


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers())
def test_any_answer_is_a_body_or_a_typed_failure(answer: bytes) -> None:
    """Whatever a miner sends, the caller gets a status and body or a QueryError, never a hang
    or a foreign exception (the server closes after answering, so nothing may wait forever)."""
    async def exchange() -> object:
        async with scripted(Script(lambda n: answer, close_after=True)) as url:
            pool = http1.Pool()
            try:
                return await fetch(pool, url, cap=1000)
            except (ConnectFailed, RemoteError) as exc:
                return exc
            finally:
                await pool.aclose()

    result = _run(exchange)
    assert isinstance(result, (tuple, ConnectFailed, RemoteError))


@pytest.mark.parametrize("size", [10, 4 << 20], ids=["small", "paused"])
async def test_a_connection_released_before_its_body_was_read_is_not_reused(size: int) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size
    script = Script(lambda n: answer if n == 1 else OK)
    async with scripted(script) as url:
        pool = http1.Pool()
        response = await pool.request(url, "/v1/echo", b"", b"", 2.0)
        await asyncio.sleep(0.1)
        response.release()
        assert await fetch(pool, url) == (200, b"hello")
        await pool.aclose()
    assert script.connections == 2
