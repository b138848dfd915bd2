"""The miner server (miners/server.py) over real loopback HTTP: every check, status and receipt."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from miners.admission import AdmissionConfig
from miners.echo import EchoRequest, EchoResponse
from miners.server import CallContext, MinerServer, ServerConfig, StakePolicy
from protocol import codec, envelope
from protocol.clock import ManualClock
from protocol.errors import HandlerError
from protocol.keys import Keypair
from protocol.ratelimit import RateLimitConfig
from protocol.replay import ReplayConfig
from tests.conftest import (
    CODES_BY_STATUS,
    ECHO_BODY,
    RawAnswer,
    RawSender,
    Signed,
    health,
    keypair_for,
    running_miner,
    wait_until,
)

#: Generous limits for tests that send many requests from one caller on purpose.
UNLIMITED = RateLimitConfig(rate=1e6, burst=1e6)


def assert_error(answer: RawAnswer, status: int, code: str, *, signed: Signed | None) -> str:
    """Check status, error body and Retry-After rules; check the receipt iff ``signed``.

    Returns the error message.
    """
    assert answer.status == status
    body = answer.error()
    assert body.code == code
    assert code in CODES_BY_STATUS[status]
    assert answer.headers["Content-Type"] == "application/msgpack"
    if signed is None:
        assert envelope.H_RECEIPT_SIGNATURE not in answer.headers
    else:
        receipt = answer.receipt(signed.digest)
        assert receipt.is_valid()
        assert receipt.status == status
    return body.message


@dataclass
class Gate:
    """A handler that holds requests whose text is "gate" until released; records callers."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[str] = field(default_factory=list)

    async def handler(self, ctx: CallContext, request: EchoRequest) -> EchoResponse:
        """Record the caller; block on the gate if asked to."""
        self.seen.append(ctx.caller)
        if request.text == "gate":
            self.entered.set()
            await self.release.wait()
        return EchoResponse(text=request.text, caller=ctx.caller)


def gate_body() -> bytes:
    """The body that makes the gate handler block."""
    return EchoRequest(text="gate").encode()


@pytest.fixture
def clock() -> ManualClock:
    """A hand-moved clock shared by a server and the raw sender."""
    return ManualClock()


@pytest.fixture
async def manual_miner(miner_key: Keypair, clock: ManualClock) -> AsyncIterator[MinerServer]:
    """An echo miner on the manual clock, with rate limits out of the way."""
    async with running_miner(miner_key, ServerConfig(rate_limit=UNLIMITED),
                             clock=clock) as server:
        yield server


@pytest.fixture
def manual_raw(raw: RawSender, clock: ManualClock) -> RawSender:
    """The raw sender, stamping requests with the manual clock."""
    raw.clock = clock
    return raw


# --- success ------------------------------------------------------------------------------------


async def test_signed_echo_with_receipt(raw: RawSender, miner: MinerServer) -> None:
    """A correct request gets 200, the echo, and a receipt over this request and body."""
    signed, answer = await raw.send(miner, EchoRequest(text="hello").encode())
    assert answer.status == 200
    assert EchoResponse.decode(answer.body) == EchoResponse(text="hello",
                                                             caller=raw.keypair.address)
    receipt = answer.receipt(signed.digest)
    receipt.verify(request_digest=signed.digest, status=200,
                   body_digest=envelope.sha256(answer.body), miner=miner.keypair.public_key.raw)
    assert answer.headers[envelope.H_MINER] == miner.address


async def test_health(http: aiohttp.ClientSession, miner: MinerServer) -> None:
    """GET /health reports the hotkey, routes, queue depth and in-flight count."""
    assert await health(http, miner) == {"status": "ok", "hotkey": miner.address,
                                         "routes": ["echo", "echo_stream"], "queue_depth": 0,
                                         "in_flight": 0}


# --- 400 / 401 / 403 / 404 ----------------------------------------------------------------------


async def test_undecodable_body_is_signed_400(raw: RawSender, miner: MinerServer) -> None:
    """A correctly signed body that is not msgpack is 400 malformed, with a receipt."""
    signed, answer = await raw.send(miner, b"\xc1")
    assert_error(answer, 400, "malformed", signed=signed)


async def test_field_error_names_the_field(raw: RawSender, miner: MinerServer) -> None:
    """A wrongly typed field is 400 and the message names it."""
    signed, answer = await raw.send(miner, codec.pack({"v": 1, "text": 5}))
    assert assert_error(answer, 400, "malformed", signed=signed) == (
        "text: expected string, got integer")


async def test_missing_header_is_401(raw: RawSender, miner: MinerServer) -> None:
    """A request without its signature header is 401 missing_header, unsigned."""
    signed = raw.sign(miner.keypair.public_key.raw).with_header(envelope.H_SIGNATURE, None)
    assert_error(await raw.post(miner.url, signed), 401, "missing_header", signed=None)


async def test_altered_body_is_401(raw: RawSender, miner: MinerServer) -> None:
    """A body other than the one signed is 401 bad_signature, unsigned."""
    signed = raw.sign(miner.keypair.public_key.raw)
    answer = await raw.post(miner.url, signed.with_body(EchoRequest(text="ho").encode()))
    assert_error(answer, 401, "bad_signature", signed=None)


async def test_wrong_receiver_is_401(raw: RawSender, miner: MinerServer,
                                     other_key: Keypair) -> None:
    """A request addressed to another miner is 401 wrong_receiver."""
    answer = await raw.post(miner.url, raw.sign(other_key.public_key.raw))
    assert_error(answer, 401, "wrong_receiver", signed=None)


async def test_replay_is_401(raw: RawSender, miner: MinerServer) -> None:
    """The same signed request sent twice: 200, then 401 replay with a receipt."""
    signed = raw.sign(miner.keypair.public_key.raw)
    assert (await raw.post(miner.url, signed)).status == 200
    assert_error(await raw.post(miner.url, signed), 401, "replay", signed=signed)


@pytest.mark.parametrize(("offset_ms", "status", "code"), [
    (-30_001, 401, "stale"), (-30_000, 200, None), (30_000, 200, None), (30_001, 401, "future"),
])
async def test_freshness_window(manual_raw: RawSender, manual_miner: MinerServer,
                                clock: ManualClock, offset_ms: int, status: int,
                                code: str | None) -> None:
    """Timestamps more than 30 s from the miner's clock either way are refused; the edges pass."""
    ts = clock.now_ms() + offset_ms
    _, answer = await manual_raw.send(manual_miner, timestamp_ms=ts, deadline_ms=ts + 60_000)
    if code is None:
        assert answer.status == status
    else:
        assert_error(answer, status, code, signed=None)


async def test_replay_after_the_window_is_stale(manual_raw: RawSender, manual_miner: MinerServer,
                                                clock: ManualClock) -> None:
    """Resending an accepted request after the window has moved on is 401 stale."""
    signed = manual_raw.sign(manual_miner.keypair.public_key.raw,
                             deadline_ms=clock.now_ms() + 600_000)
    assert (await manual_raw.post(manual_miner.url, signed)).status == 200
    clock.advance(30.001)
    assert_error(await manual_raw.post(manual_miner.url, signed), 401, "stale", signed=None)


async def test_replay_memory_flood_keeps_rejecting(manual_raw: RawSender, miner_key: Keypair,
                                                   clock: ManualClock) -> None:
    """With a replay memory of 8, after 20 unique requests the first is still refused (stale)."""
    config = ServerConfig(rate_limit=UNLIMITED, replay=ReplayConfig(capacity=8))
    async with running_miner(miner_key, config, clock=clock) as server:
        requests = []
        for i in range(20):
            signed = manual_raw.sign(server.keypair.public_key.raw,
                                     timestamp_ms=clock.now_ms() - 20 + i)
            requests.append(signed)
            assert (await manual_raw.post(server.url, signed)).status == 200
        assert_error(await manual_raw.post(server.url, requests[0]), 401, "stale", signed=None)
        assert_error(await manual_raw.post(server.url, requests[-1]), 401, "replay",
                     signed=requests[-1])


async def test_out_of_order_concurrent_nonces(manual_raw: RawSender, manual_miner: MinerServer,
                                              clock: ManualClock) -> None:
    """Fifty requests from one caller, stamped in order and sent at once in reverse, all pass."""
    now = clock.now_ms()
    batch = [manual_raw.sign(manual_miner.keypair.public_key.raw, timestamp_ms=now - 50 + i)
             for i in range(50)]
    answers = await asyncio.gather(*(manual_raw.post(manual_miner.url, s)
                                     for s in reversed(batch)))
    assert [a.status for a in answers] == [200] * 50


@pytest.mark.parametrize(("stake", "code"), [(None, "unregistered"), (0.5, "low_stake")])
async def test_policy_refuses_with_403(raw: RawSender, miner_key: Keypair, stake: float | None,
                                       code: str) -> None:
    """Unknown callers and callers below the minimum stake are 403."""
    policy = StakePolicy(lambda caller: stake, min_stake=1.0)
    async with running_miner(miner_key, policy=policy) as server:
        _, answer = await raw.send(server)
    assert_error(answer, 403, code, signed=None)


async def test_wrong_subnet_is_403(raw: RawSender, miner: MinerServer) -> None:
    """A request for another subnet is 403 wrong_subnet."""
    _, answer = await raw.send(miner, netuid=2)
    assert_error(answer, 403, "wrong_subnet", signed=None)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/nope"), ("GET", "/v1/echo"), ("GET", "/"), ("POST", "/v2/echo"),
    ("PUT", "/health"),
])
async def test_unknown_route_is_404(raw: RawSender, miner: MinerServer, method: str,
                                    path: str) -> None:
    """Unknown routes and methods are 404 unknown_route with a typed error body."""
    signed = raw.sign(miner.keypair.public_key.raw, route="nope")
    async with raw.session.request(method, miner.url + path, data=signed.body,
                                   headers=signed.headers) as resp:
        answer = RawAnswer(resp.status, resp.headers, await resp.read())
    assert_error(answer, 404, "unknown_route", signed=None)


# --- 413 ----------------------------------------------------------------------------------------


SMALL = ServerConfig(limits=codec.Limits(max_body=1024, max_array=4))


async def test_content_length_over_the_cap_is_413(raw: RawSender, miner_key: Keypair) -> None:
    """A Content-Length over the body cap is refused with 413 before the body is read."""
    async with running_miner(miner_key, SMALL) as server:
        _, answer = await raw.send(server, EchoRequest(text="x" * 1100).encode())
    assert_error(answer, 413, "too_large", signed=None)


async def test_chunked_body_over_the_cap_is_413(raw: RawSender, miner_key: Keypair) -> None:
    """A chunked body (no Content-Length) is cut at the cap with 413."""
    async with running_miner(miner_key, SMALL) as server:
        signed = raw.sign(server.keypair.public_key.raw, EchoRequest(text="x" * 3000).encode())

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(signed.body), 512):
                yield signed.body[start:start + 512]

        async with raw.session.post(server.url + "/v1/echo", data=chunks(),
                                    headers=signed.headers) as resp:
            assert resp.headers.get("Content-Length") is not None
            answer = RawAnswer(resp.status, resp.headers, await resp.read())
    assert_error(answer, 413, "too_large", signed=None)


async def _raw_exchange(server: MinerServer, head: dict[str, str], body: bytes, *,
                        then: bytes = b"", wait_s: float = 5.0) -> tuple[int, bytes]:
    """Send a hand-made HTTP/1.1 request (headers and ``body`` as given, and ``then`` 0.1 s
    later) and read the answer: its status and the raw response (0, b"" if none in ``wait_s``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        lines = ["POST /v1/echo HTTP/1.1", "Host: 127.0.0.1",
                 *(f"{k}: {v}" for k, v in head.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        if then:
            await asyncio.sleep(0.1)
            writer.write(then)
            await writer.drain()
        try:
            async with asyncio.timeout(wait_s):
                data = await reader.read(65536)
        except TimeoutError:
            return 0, b""
        return int(data.split(b" ", 2)[1]), data
    finally:
        writer.close()


def _msgpack_error_code(data: bytes) -> str:
    body = data.split(b"\r\n\r\n", 1)[1]
    return str(codec.unpack(body)["code"])


async def test_a_body_that_does_not_arrive_is_504_at_the_body_timeout(
        raw: RawSender, miner_key: Keypair) -> None:
    """Half a body and then silence: 504 at the body timeout, not a connection held forever."""
    config = ServerConfig(body_timeout_s=0.3)
    async with running_miner(miner_key, config) as server:
        signed = raw.sign(server.keypair.public_key.raw)
        head = {**signed.headers, "Content-Length": str(len(signed.body))}
        started = time.perf_counter()
        status, data = await _raw_exchange(server, head, signed.body[: len(signed.body) // 2])
        elapsed = time.perf_counter() - started
    assert status == 504
    assert _msgpack_error_code(data) == "deadline_exceeded"
    assert 0.3 <= elapsed < 2.0


async def test_bodies_arriving_at_once_are_bounded(raw: RawSender, miner_key: Keypair) -> None:
    """With ``max_body_reads`` bodies still arriving, one more is refused at once with 503."""
    config = ServerConfig(body_timeout_s=5.0, max_body_reads=2)
    async with running_miner(miner_key, config) as server:
        stalled = []
        for _ in range(2):
            signed = raw.sign(server.keypair.public_key.raw)
            head = {**signed.headers, "Content-Length": str(len(signed.body))}
            stalled.append(asyncio.create_task(_raw_exchange(server, head, signed.body[:10])))
        await asyncio.sleep(0.2)
        signed = raw.sign(server.keypair.public_key.raw)
        head = {**signed.headers, "Content-Length": str(len(signed.body))}
        status, data = await _raw_exchange(server, head, signed.body[:10], wait_s=2.0)
        for task in stalled:
            task.cancel()
        await asyncio.gather(*stalled, return_exceptions=True)
    assert status == 503
    assert _msgpack_error_code(data) == "overloaded"


async def test_compressed_body_is_refused_with_400(raw: RawSender, miner: MinerServer) -> None:
    """A Content-Encoding is refused before the body is read (no decoder work for strangers,
    and the signature covers the bytes sent)."""
    signed = raw.sign(miner.keypair.public_key.raw)
    zipped = gzip.compress(signed.body)
    head = {**signed.headers, "Content-Length": str(len(zipped)), "Content-Encoding": "gzip"}
    status, data = await _raw_exchange(miner, head, zipped)
    assert status == 400
    assert _msgpack_error_code(data) == "unsupported_encoding"


async def test_broken_chunking_is_never_a_500_or_a_hang(raw: RawSender,
                                                      miner_key: Keypair) -> None:
    """A chunked body that turns to garbage while the miner reads it gets a typed error
    within the body timeout, never a 500 and never a connection held open."""
    async with running_miner(miner_key, ServerConfig(body_timeout_s=0.3)) as server:
        signed = raw.sign(server.keypair.public_key.raw)
        head = {**signed.headers, "Transfer-Encoding": "chunked"}
        status, data = await _raw_exchange(server, head, b"5\r\nhello\r\n",
                                           then=b"zz\r\nabc\r\n")
    assert status in (400, 504), data


async def test_body_at_the_cap_is_read(raw: RawSender, miner_key: Keypair) -> None:
    """A body of exactly max_body bytes passes the size check (and is then decoded)."""
    overhead = len(codec.pack({"v": 1, "text": "x" * 300})) - 300  # str16 header included
    padded = codec.pack({"v": 1, "text": "x" * (1024 - overhead)})
    assert len(padded) == 1024
    async with running_miner(miner_key, SMALL) as server:
        _, answer = await raw.send(server, padded)
    assert answer.status == 200


async def test_msgpack_limit_is_signed_413(raw: RawSender, miner_key: Keypair) -> None:
    """A signed body exceeding a msgpack limit (array of 5 with max_array 4) is 413 with receipt."""
    async with running_miner(miner_key, SMALL) as server:
        signed, answer = await raw.send(server, codec.pack({"v": 1, "text": [1, 2, 3, 4, 5]}))
    assert_error(answer, 413, "too_large", signed=signed)


# --- 429 / 503 / 504 / 500 ----------------------------------------------------------------------


async def test_rate_limit_is_429_with_retry_after(raw: RawSender, miner_key: Keypair,
                                                  clock: ManualClock) -> None:
    """Past the burst a caller gets 429 with Retry-After in whole seconds (rounded up)."""
    config = ServerConfig(rate_limit=RateLimitConfig(rate=0.4, burst=2))
    raw.clock = clock
    async with running_miner(miner_key, config, clock=clock) as server:
        assert [(await raw.send(server))[1].status for _ in range(2)] == [200, 200]
        signed, answer = await raw.send(server)
        assert_error(answer, 429, "rate_limited", signed=signed)
        assert answer.headers["Retry-After"] == "3"
        assert answer.error().retry_after == 2.5
        clock.advance(2.5)
        assert (await raw.send(server))[1].status == 200


async def test_forged_requests_do_not_spend_a_callers_rate_limit(
        raw: RawSender, miner_key: Keypair, other_key: Keypair, clock: ManualClock) -> None:
    """Requests naming a caller but signed by someone else are 401 and cost that caller nothing."""
    config = ServerConfig(rate_limit=RateLimitConfig(rate=0.001, burst=2))
    raw.clock = clock
    async with running_miner(miner_key, config, clock=clock) as server:
        for _ in range(5):
            forged = raw.sign(server.keypair.public_key.raw)
            forged = forged.with_header(envelope.H_SIGNATURE, other_key.sign(b"x").hex())
            assert_error(await raw.post(server.url, forged), 401, "bad_signature", signed=None)
        assert [(await raw.send(server))[1].status for _ in range(2)] == [200, 200]


async def test_replays_do_not_spend_a_callers_rate_limit(raw: RawSender, miner_key: Keypair,
                                                         clock: ManualClock) -> None:
    """Replaying a captured request is 401 replay and leaves the caller's tokens alone."""
    config = ServerConfig(rate_limit=RateLimitConfig(rate=0.001, burst=2))
    raw.clock = clock
    async with running_miner(miner_key, config, clock=clock) as server:
        captured, first = await raw.send(server)
        assert first.status == 200
        for _ in range(5):
            assert_error(await raw.post(server.url, captured), 401, "replay", signed=captured)
        assert (await raw.send(server))[1].status == 200


async def test_rate_limited_requests_take_no_replay_memory(
        manual_raw: RawSender, miner_key: Keypair, other_key: Keypair,
        clock: ManualClock) -> None:
    """One caller flooding past its rate limit with future-stamped requests cannot fill the
    replay memory and raise its horizon over everyone else's requests."""
    config = ServerConfig(rate_limit=RateLimitConfig(rate=0.001, burst=3),
                          replay=ReplayConfig(capacity=10))
    async with running_miner(miner_key, config, clock=clock) as server:
        statuses = []
        for _ in range(20):
            signed = manual_raw.sign(server.keypair.public_key.raw,
                                     timestamp_ms=clock.now_ms() + 20_000)
            statuses.append((await manual_raw.post(server.url, signed)).status)
        assert statuses == [200] * 3 + [429] * 17
        _, answer = await manual_raw.send(server, keypair=other_key)
        assert answer.status == 200


async def test_full_queue_is_503(raw: RawSender, http: aiohttp.ClientSession,
                                 miner_key: Keypair) -> None:
    """With one slot busy and one request queued, the next is 503 with Retry-After."""
    gate = Gate()
    config = ServerConfig(admission=AdmissionConfig(max_concurrent=1, max_queue=1))
    async with running_miner(miner_key, config, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, gate.handler)
        holder = asyncio.create_task(raw.send(server, gate_body()))
        await gate.entered.wait()
        queued = asyncio.create_task(raw.send(server))
        await wait_until(lambda: _depth_is(http, server, 1))
        signed, refused = await raw.send(server)
        assert_error(refused, 503, "overloaded", signed=signed)
        assert refused.headers["Retry-After"] == "1"
        assert refused.error().retry_after == 1.0
        gate.release.set()
        assert [(await t)[1].status for t in (holder, queued)] == [200, 200]


async def _depth_is(http: aiohttp.ClientSession, server: MinerServer, depth: int) -> bool:
    return (await health(http, server))["queue_depth"] == depth


async def test_queue_serves_highest_stake_first(raw: RawSender, http: aiohttp.ClientSession,
                                                miner_key: Keypair) -> None:
    """With one slot, queued requests from five callers are served in descending stake order."""
    holder = keypair_for("holder")
    callers = [keypair_for(f"caller-{i}") for i in range(5)]
    stakes = {holder.public_key.raw: 1.0}
    for pair, stake in zip(callers, [10.0, 50.0, 30.0, 40.0, 20.0], strict=True):
        stakes[pair.public_key.raw] = stake
    gate = Gate()
    config = ServerConfig(admission=AdmissionConfig(max_concurrent=1, max_queue=16))
    async with running_miner(miner_key, config, policy=StakePolicy(stakes.get),
                             echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, gate.handler)
        first = asyncio.create_task(raw.send(server, gate_body(), keypair=holder))
        await gate.entered.wait()
        queued = [asyncio.create_task(raw.send(server, keypair=pair)) for pair in callers]
        await wait_until(lambda: _depth_is(http, server, 5))
        gate.release.set()
        statuses = [(await t)[1].status for t in (first, *queued)]
    assert statuses == [200] * 6
    by_stake = sorted(callers, key=lambda pair: -stakes[pair.public_key.raw])
    assert gate.seen == [holder.address] + [pair.address for pair in by_stake]


async def test_deadline_already_passed_is_504(manual_raw: RawSender, manual_miner: MinerServer,
                                              clock: ManualClock) -> None:
    """A fresh request whose deadline is at or before the miner's now is 504, unsigned."""
    now = clock.now_ms()
    _, answer = await manual_raw.send(manual_miner, timestamp_ms=now - 1000, deadline_ms=now)
    assert_error(answer, 504, "deadline_exceeded", signed=None)


async def test_deadline_cancels_an_async_handler(raw: RawSender, miner_key: Keypair) -> None:
    """At the deadline the handler sees CancelledError and the caller gets a signed 504."""
    cancelled = asyncio.Event()
    contexts: list[CallContext] = []

    async def stuck(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        contexts.append(ctx)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, stuck)
        now = raw.clock.now_ms()
        signed, answer = await raw.send(server, deadline_ms=now + 300)
        async with asyncio.timeout(5):
            await cancelled.wait()
    assert assert_error(answer, 504, "deadline_exceeded", signed=signed) == (
        "deadline passed; the work was cancelled")
    assert contexts[0].cancelled.is_set()


async def test_deadline_sets_a_blocking_handlers_cancelled_event(raw: RawSender,
                                                                 miner_key: Keypair) -> None:
    """A blocking handler's ctx.cancelled is set when the deadline passes; the caller gets 504."""
    observed: list[tuple[bool, float]] = []
    finished = threading.Event()

    def blocking(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        observed.append((ctx.cancelled.wait(timeout=5), time.monotonic()))
        finished.set()
        return EchoResponse(text=request.text, caller=ctx.caller)

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, blocking, kind="blocking")
        sent = time.monotonic()
        signed, answer = await raw.send(server, deadline_ms=raw.clock.now_ms() + 300)
        assert await asyncio.to_thread(finished.wait, 5)
    assert_error(answer, 504, "deadline_exceeded", signed=signed)
    (was_set, at), = observed
    assert was_set
    assert 0.25 <= at - sent < 2.0


async def test_blocking_handler_runs_off_the_loop(raw: RawSender, miner_key: Keypair) -> None:
    """A blocking handler runs in a worker thread and its answer is signed like any other."""
    threads: list[str] = []

    def blocking(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        threads.append(threading.current_thread().name)
        return EchoResponse(text=request.text.upper(), caller=ctx.caller)

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, blocking, kind="blocking")
        signed, answer = await raw.send(server)
    assert answer.status == 200
    assert EchoResponse.decode(answer.body).text == "HI"
    assert answer.receipt(signed.digest).is_valid()
    assert threads[0].startswith("miner-handler")


async def test_deadline_while_queued_is_504(raw: RawSender, http: aiohttp.ClientSession,
                                            miner_key: Keypair) -> None:
    """A request whose deadline passes while it waits for a slot is 504 and leaves the queue."""
    gate = Gate()
    config = ServerConfig(admission=AdmissionConfig(max_concurrent=1, max_queue=4))
    async with running_miner(miner_key, config, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, gate.handler)
        holder = asyncio.create_task(raw.send(server, gate_body()))
        await gate.entered.wait()
        signed, answer = await raw.send(server, deadline_ms=raw.clock.now_ms() + 300)
        assert_error(answer, 504, "deadline_exceeded", signed=signed)
        assert await _depth_is(http, server, 0)
        gate.release.set()
        assert (await holder)[1].status == 200


@pytest.mark.parametrize("failure", ["crash", "wrong_type"])
async def test_handler_failure_is_500_without_internals(raw: RawSender, miner_key: Keypair,
                                                        failure: str) -> None:
    """A crashing handler, or one returning the wrong type, is a signed 500 that hides details."""

    async def broken(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        if failure == "crash":
            raise RuntimeError("secret internal state")
        return EchoRequest(text="not a response")  # type: ignore[return-value]

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, broken)
        signed, answer = await raw.send(server)
    message = assert_error(answer, 500, "handler_failed", signed=signed)
    assert "secret" not in message


async def test_handler_wire_error_passes_through(raw: RawSender, miner_key: Keypair) -> None:
    """A handler raising a WireError answers with that error's status and code."""

    async def refusing(ctx: CallContext, request: EchoRequest) -> EchoResponse:
        raise HandlerError("model unavailable", code="handler_failed")

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, refusing)
        signed, answer = await raw.send(server)
    assert assert_error(answer, 500, "handler_failed", signed=signed) == "model unavailable"


# --- tampering ----------------------------------------------------------------------------------


def _next_char(c: str) -> str:
    """The next symbol of the alphabet ``c`` belongs to (digits, hex, base32, letters)."""
    for alphabet in ("0123456789", "0123456789abcdef", "abcdefghijklmnopqrstuvwxyz234567"):
        if c in alphabet:
            return alphabet[(alphabet.index(c) + 1) % len(alphabet)]
    return chr(ord(c) + 1)


#: The only refusals a one-character change may produce, per header.
ALLOWED = {
    envelope.H_VERSION: {(400, "unsupported_version")},
    envelope.H_CALLER: {(400, "bad_header")},
    envelope.H_RECEIVER: {(400, "bad_header")},
    envelope.H_NETUID: {(403, "wrong_subnet")},
    envelope.H_TIMESTAMP: {(401, "stale"), (401, "future"), (401, "bad_signature"),
                           (400, "bad_deadline")},
    envelope.H_DEADLINE: {(400, "bad_deadline"), (401, "bad_signature")},
    envelope.H_NONCE: {(401, "bad_signature")},
    envelope.H_SIGNATURE: {(401, "bad_signature")},
}


async def test_any_one_byte_change_is_rejected(manual_raw: RawSender, manual_miner: MinerServer,
                                               clock: ManualClock) -> None:
    """Changing any single character of any signed header, or any body byte, is never a 200."""
    receiver = manual_miner.keypair.public_key.raw
    outcomes: dict[str, set[tuple[int, str]]] = {name: set() for name in ALLOWED}
    outcomes["body"] = set()
    for name in envelope.REQUEST_HEADERS:
        length = len(manual_raw.sign(receiver).headers[name])
        for i in range(length):
            signed = manual_raw.sign(receiver)
            value = signed.headers[name]
            changed = value[:i] + _next_char(value[i]) + value[i + 1:]
            answer = await manual_raw.post(manual_miner.url, signed.with_header(name, changed))
            outcomes[name].add((answer.status, answer.error().code))
    for i in range(len(ECHO_BODY)):
        signed = manual_raw.sign(receiver)
        body = bytearray(ECHO_BODY)
        body[i] ^= 0x01
        answer = await manual_raw.post(manual_miner.url, signed.with_body(bytes(body)))
        outcomes["body"].add((answer.status, answer.error().code))
    for name, allowed in ALLOWED.items():
        assert outcomes[name] <= allowed, name
    assert outcomes["body"] == {(401, "bad_signature")}
    assert outcomes[envelope.H_NONCE] == outcomes[envelope.H_SIGNATURE] == {(401, "bad_signature")}
    # The untouched request still passes: the refusals above are the changes.
    assert (await manual_raw.post(manual_miner.url, manual_raw.sign(receiver))).status == 200


# --- metrics ------------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _metrics(http: aiohttp.ClientSession, server: MinerServer) -> str:
    async with http.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def test_metrics_count_requests_rejections_latency(raw: RawSender,
                                                         http: aiohttp.ClientSession,
                                                         miner: MinerServer) -> None:
    """/metrics counts answers by route and status, rejections by reason, and latencies."""
    for _ in range(3):
        await raw.send(miner)
    replayed = raw.sign(miner.keypair.public_key.raw)
    await raw.post(miner.url, replayed)
    await raw.post(miner.url, replayed)
    await raw.post(miner.url, raw.sign(miner.keypair.public_key.raw).with_body(b"\xc0"))
    await raw.post(miner.url, raw.sign(miner.keypair.public_key.raw), path="/v1/nope")
    samples = _samples(await _metrics(http, miner))
    assert samples[("ensemble_miner_requests_total", (("route", "echo"), ("status", "200")))] == 4
    assert samples[("ensemble_miner_requests_total", (("route", "echo"), ("status", "401")))] == 2
    assert samples[("ensemble_miner_requests_total",
                    (("route", "unknown"), ("status", "404")))] == 1
    assert samples[("ensemble_miner_rejections_total", (("reason", "replay"),))] == 1
    assert samples[("ensemble_miner_rejections_total", (("reason", "bad_signature"),))] == 1
    assert samples[("ensemble_miner_rejections_total", (("reason", "unknown_route"),))] == 1
    assert samples[("ensemble_miner_latency_seconds_count", (("route", "echo"),))] == 6
    assert samples[("ensemble_miner_latency_seconds_count", (("route", "unknown"),))] == 1
    assert samples[("ensemble_miner_latency_seconds_bucket",
                    (("le", "+Inf"), ("route", "echo")))] == 6
    assert samples[("ensemble_miner_queue_depth", ())] == 0
    assert samples[("ensemble_miner_in_flight", ())] == 0


async def test_metrics_show_queue_depth(raw: RawSender, http: aiohttp.ClientSession,
                                        miner_key: Keypair) -> None:
    """While one request runs and two wait, /metrics reports in_flight 1 and queue_depth 2."""
    gate = Gate()
    config = ServerConfig(admission=AdmissionConfig(max_concurrent=1, max_queue=4))
    async with running_miner(miner_key, config, echo=False) as server:
        server.add_route("echo", EchoRequest, EchoResponse, gate.handler)
        tasks = [asyncio.create_task(raw.send(server, gate_body()))]
        await gate.entered.wait()
        tasks += [asyncio.create_task(raw.send(server)) for _ in range(2)]
        await wait_until(lambda: _depth_is(http, server, 2))
        samples = _samples(await _metrics(http, server))
        gate.release.set()
        assert [(await t)[1].status for t in tasks] == [200] * 3
    assert samples[("ensemble_miner_queue_depth", ())] == 2
    assert samples[("ensemble_miner_in_flight", ())] == 1
