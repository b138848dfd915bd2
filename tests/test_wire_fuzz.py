"""Fuzzing a real running miner: random and mutated requests always get a typed refusal.

The server and an aiohttp session live on an event loop in a background thread, started once for
the module; hypothesis drives synchronous tests that submit exchanges to that loop and wait for
each with a bound, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from miners.echo import EchoRequest, add_echo_routes
from miners.server import MinerServer, ServerConfig
from protocol import codec, envelope
from protocol.errors import MalformedError, PayloadTooLargeError
from protocol.keys import Keypair
from protocol.ratelimit import RateLimitConfig
from tests.conftest import (
    CALLER_SEED,
    CODES_BY_STATUS,
    MINER_SEED,
    RawAnswer,
    RawSender,
    Signed,
)

T = TypeVar("T")
#: Seconds one exchange may take before the test calls it a hang.
HANG_S = 15.0
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Live:
    """A miner running on a private event loop in another thread, and a way to talk to it."""

    loop: asyncio.AbstractEventLoop
    server: MinerServer
    sender: RawSender

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the server's loop and return its result (fails after HANG_S)."""
        future = asyncio.run_coroutine_threadsafe(_call(make), self.loop)
        return future.result(timeout=HANG_S)

    def health(self) -> int:
        """The status of GET /health."""
        async def get() -> int:
            async with self.sender.session.get(self.server.url + "/health") as resp:
                await resp.read()
                return resp.status
        return self.run(get)


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """Start one echo miner (rate limits raised, so every fuzz request reaches the deep checks)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-miner", daemon=True)
    thread.start()
    config = ServerConfig(rate_limit=RateLimitConfig(rate=1e6, burst=1e6))
    server = MinerServer(Keypair(MINER_SEED), config)
    add_echo_routes(server)

    async def start() -> aiohttp.ClientSession:
        await server.start()
        return aiohttp.ClientSession(auto_decompress=False)

    session = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=HANG_S)
    try:
        yield Live(loop, server, RawSender(session, Keypair(CALLER_SEED)))
    finally:
        async def stop() -> None:
            await session.close()
            await server.aclose()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=HANG_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=HANG_S)
        loop.close()


@pytest.fixture(autouse=True)
def stays_healthy(live: Live) -> Iterator[None]:
    """After each fuzz test the server must still answer GET /health with 200."""
    yield
    assert live.health() == 200


def post(live: Live, path: str, headers: CIMultiDict[str], body: bytes) -> RawAnswer:
    """POST exact bytes with exact headers to the live miner (rejects values aiohttp refuses)."""
    async def send() -> RawAnswer:
        async with live.sender.session.post(live.server.url + path, data=body,
                                            headers=headers) as resp:
            return RawAnswer(resp.status, CIMultiDict(resp.headers), await resp.read())
    try:
        return live.run(send)
    except ValueError:  # the client refuses a header value it cannot send (e.g. a control char)
        reject()


def check_typed_refusal(answer: RawAnswer, *, may_succeed: bool = False) -> None:
    """The invariant: a typed error body whose code matches the status family; 4xx (or 504 for
    a deadline); Retry-After on 429/503; never a 500. A 200 only where ``may_succeed``."""
    if answer.status == 200:
        assert may_succeed, "a changed or unsigned request was accepted"
        event("200 ok")
        return
    body = answer.error()
    event(f"{answer.status} {body.code}")  # shown by --hypothesis-show-statistics
    assert body.code in CODES_BY_STATUS[answer.status], (answer.status, body.code)
    assert 400 <= answer.status < 500 or (answer.status, body.code) == (504, "deadline_exceeded")
    if answer.status in (429, 503):
        assert int(answer.headers["Retry-After"]) >= 1


def may_succeed(body: bytes) -> bool:
    """Whether a correctly signed request with ``body`` should be served (it is a valid echo)."""
    try:
        EchoRequest.decode(body)
    except (MalformedError, PayloadTooLargeError):
        return False
    return True


def signed(live: Live, body: bytes, route: str = "echo", deadline_s: float = 2.0) -> Signed:
    """A freshly signed request for the live miner (a 2 s deadline bounds any accidental work)."""
    now = live.sender.clock.now_ms()
    return live.sender.sign(live.server.keypair.public_key.raw, body, route=route,
                            deadline_ms=now + int(deadline_s * 1000))


header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=140)
patterned_bodies = st.builds(lambda unit, n: unit * n,
                             st.sampled_from([b"\x91", b"\x81\xa1a", b"\xdc\xff\xff", b"\xc1",
                                              b"\xd4\x05\x00", b"\xa1\xff"]),
                             st.integers(1, 3000))
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "text", "delay_ms", "repeat", "x"]) | st.text(max_size=6), inner,
        max_size=5),
    max_leaves=15)
message_bodies = plain.map(codec.pack)


@FUZZ
@given(st.binary(max_size=400) | patterned_bodies | message_bodies)
def test_signed_arbitrary_bodies(live: Live, body: bytes) -> None:
    """Correctly signed random, pathological or structured bodies get 200 only if valid."""
    request = signed(live, body)
    answer = post(live, "/v1/echo", CIMultiDict(request.headers), body)
    check_typed_refusal(answer, may_succeed=may_succeed(body))


_header_char = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))


def variant_of(original: str) -> st.SearchStrategy[str | None]:
    """A changed value: mostly ``original`` with one character edited, else random or absent."""
    edits = st.tuples(st.integers(0, len(original)),
                      st.sampled_from(["replace", "insert", "delete"]),
                      st.one_of(st.sampled_from("0123456789abcdefABCDEF ens1"), _header_char))
    return st.sampled_from(["edit", "edit", "edit", "random", "remove"]).flatmap(
        lambda how: {"edit": edits.map(lambda e: _edit(original, *e)), "random": header_text,
                     "remove": st.none()}[how])


def _edit(value: str, index: int, how: str, char: str) -> str:
    if how == "insert":
        return value[:index] + char + value[index:]
    tail = value[index + 1:]
    return value[:index] + (char if how == "replace" else "") + tail


def _same(new: str | None, old: str) -> bool:
    """Whether a value means the same as ``old`` (HTTP strips blanks; addresses ignore case)."""
    return new is not None and new.strip(" \t").lower() == old.lower()


@FUZZ
@given(st.data())
def test_signed_headers_edited(live: Live, data: st.DataObject) -> None:
    """Editing, replacing or removing one to three signed headers is refused with a typed 4xx."""
    request = signed(live, EchoRequest(text="fuzz").encode())
    headers = CIMultiDict(request.headers)
    names = data.draw(st.lists(st.sampled_from(envelope.REQUEST_HEADERS), min_size=1, max_size=3,
                               unique=True), label="headers")
    unchanged = True
    for name in names:
        old = headers.pop(name)
        value = data.draw(variant_of(old), label=name)
        unchanged = unchanged and _same(value, old)
        if value is not None:
            headers[name] = value
    check_typed_refusal(post(live, "/v1/echo", headers, request.body), may_succeed=unchanged)


@FUZZ
@given(st.sampled_from(envelope.REQUEST_HEADERS), header_text, st.booleans())
def test_duplicated_header(live: Live, name: str, value: str, extra_first: bool) -> None:
    """A second copy of a signed header is never accepted unless the copy used is the signed one."""
    request = signed(live, EchoRequest(text="fuzz").encode())
    headers = CIMultiDict(request.headers)
    if extra_first:
        original = headers.pop(name)
        headers.add(name, value)
        headers.add(name, original)
    else:
        headers.add(name, value)
    ok = not extra_first or _same(value, request.headers[name])
    check_typed_refusal(post(live, "/v1/echo", headers, request.body), may_succeed=ok)


@FUZZ
@given(st.data())
def test_mutated_body_under_a_valid_signature(live: Live, data: st.DataObject) -> None:
    """Any change to the signed body (flip, insert, delete, truncate, extend) is refused."""
    body = EchoRequest(text=data.draw(st.text(max_size=30), label="text")).encode()
    request = signed(live, body)
    mutated = bytearray(body)
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]))
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    if kind == "flip":
        mutated[index] ^= data.draw(st.integers(1, 255), label="mask")
    elif kind == "insert":
        mutated.insert(index, data.draw(st.integers(0, 255), label="byte"))
    elif kind == "delete":
        del mutated[index]
    elif kind == "truncate":
        del mutated[index:]
    else:
        mutated += data.draw(st.binary(min_size=1, max_size=20), label="tail")
    answer = post(live, "/v1/echo", CIMultiDict(request.headers), bytes(mutated))
    check_typed_refusal(answer)
    assert (answer.status, answer.error().code) == (401, "bad_signature")


@FUZZ
@given(st.dictionaries(st.sampled_from(envelope.REQUEST_HEADERS), header_text, max_size=8),
       st.binary(max_size=100))
def test_random_headers_and_body(live: Live, headers: dict[str, str], body: bytes) -> None:
    """Entirely random header values and bodies are refused with a typed 4xx."""
    check_typed_refusal(post(live, "/v1/echo", CIMultiDict(headers), body))


def _is_route(name: str) -> bool:
    try:
        envelope.check_route(envelope.ROUTE_PREFIX + name)
    except MalformedError:
        return False
    return True


@FUZZ
@given(st.text(max_size=80) | st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True)
       | st.sampled_from(["echo", "echo_stream", "Echo", "echo/", "..", "echo%00"]))
def test_random_routes(live: Live, route: str) -> None:
    """Any route name, signed for or not, is served only if it exists; else a typed 4xx."""
    path = "/v1/" + urllib.parse.quote(route, safe="")
    request = signed(live, EchoRequest(text="r").encode(),
                     route=route if _is_route(route) else "echo")
    answer = post(live, path, CIMultiDict(request.headers), request.body)
    check_typed_refusal(answer, may_succeed=route in ("echo", "echo_stream"))


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_raw_socket_garbage(live: Live, garbage: bytes) -> None:
    """Raw bytes on the socket never crash the server: any answer is a 4xx, never a 5xx."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.server.port)
        try:
            writer.write(garbage + b"\r\n\r\n")
            await writer.drain()
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(0.5):
                    return await reader.read(64)
            return b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    head = live.run(exchange)
    if head.startswith(b"HTTP/1."):
        assert head[9:10] == b"4", head


def test_server_is_healthy_after_fuzzing(live: Live) -> None:
    """After every fuzz test above, the same server still answers /health and a real request."""
    assert live.health() == 200
    request = signed(live, EchoRequest(text="still here").encode())
    answer = post(live, "/v1/echo", CIMultiDict(request.headers), request.body)
    assert answer.status == 200
    assert answer.receipt(request.digest).is_valid()
