"""Signed streams (protocol/stream.py) byte by byte, and the client against real and fake miners."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from miners.echo import EchoChunk, EchoRequest
from miners.server import CallContext, MinerServer
from protocol import envelope, stream
from protocol.client import Client, Target, Timeouts
from protocol.errorbody import ErrorBody
from protocol.errors import (
    HandlerError,
    RateLimitedError,
    RemoteError,
    StreamIntegrityError,
)
from protocol.keys import Keypair
from tests.conftest import (
    MINER_SEED,
    LaggingClock,
    keypair_for,
    running_miner,
    serve_raw,
    verify_raw_request,
)

MINER = Keypair(MINER_SEED)
OTHER = keypair_for("other")
REQUEST_DIGEST = envelope.sha256(b"a request")
TS = 1_790_000_000_000
CHUNKS = [EchoChunk(index=i, text="abc"[i]).encode() for i in range(3)]


def signed_stream(chunks: list[bytes] = CHUNKS, *, error: ErrorBody | None = None,
                  status: int = 200, key: Keypair = MINER,
                  request_digest: bytes = REQUEST_DIGEST) -> tuple[list[bytes], bytes]:
    """Return the DATA (and ERROR) frames of ``chunks`` and the signed trailer frame."""
    signer = stream.StreamSigner(key, request_digest)
    frames = [signer.frame(stream.DATA, c) for c in chunks]
    if error is not None:
        frames.append(signer.frame(stream.ERROR, error.encode()))
    trailer, _ = signer.trailer(status, TS)
    return frames, trailer


def read_all(data: bytes, pieces: list[int] | None = None,
             miner: bytes = MINER.public_key.raw) -> tuple[list[stream.Frame], envelope.Receipt]:
    """Feed ``data`` (split at ``pieces`` offsets) to a reader; return frames and the receipt."""
    reader = stream.StreamReader(REQUEST_DIGEST, miner)
    cuts = [0, *sorted(pieces or []), len(data)]
    frames: list[stream.Frame] = []
    for start, end in itertools.pairwise(cuts):
        frames += reader.feed(data[start:end])
    return frames, reader.finish()


WHOLE = b"".join(signed_stream()[0]) + signed_stream()[1]


def test_round_trip_gives_frames_and_a_verified_receipt() -> None:
    """A signed stream reads back as its DATA frames and a receipt over the running digest."""
    frames, receipt = read_all(WHOLE)
    assert frames == [stream.Frame(stream.DATA, c) for c in CHUNKS]
    assert (receipt.status, receipt.timestamp_ms, receipt.miner) == (200, TS, MINER.public_key.raw)
    digest = stream.initial_digest(REQUEST_DIGEST)
    for frame in signed_stream()[0]:
        digest = envelope.sha256(digest + frame)
    receipt.verify(request_digest=REQUEST_DIGEST, status=200, body_digest=digest,
                   miner=MINER.public_key.raw)


def test_frame_layout() -> None:
    """A frame is kind (u8), length (u32 BE), payload; the trailer payload is 74 bytes."""
    assert stream.encode_frame(stream.DATA, b"xyz") == b"\x01\x00\x00\x00\x03xyz"
    trailer = signed_stream()[1]
    assert trailer[:5] == b"\xff\x00\x00\x00\x4a"
    assert trailer[5:7] == b"\x00\xc8"
    assert trailer[7:15] == TS.to_bytes(8, "big")
    assert len(trailer) == 5 + 74


def test_fed_byte_by_byte() -> None:
    """Feeding one byte at a time gives the same frames and receipt as one big chunk."""
    assert read_all(WHOLE, list(range(1, len(WHOLE)))) == read_all(WHOLE)


@given(st.lists(st.integers(0, len(WHOLE)), max_size=12))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    """However the transport splits the bytes, the reader yields the same frames and receipt."""
    assert read_all(WHOLE, cuts) == read_all(WHOLE)


def test_every_single_byte_change_is_detected() -> None:
    """Flipping any one bit of any byte, trailer included, fails the stream."""
    for index in range(len(WHOLE)):
        for bit in (0x01, 0x80):
            altered = bytearray(WHOLE)
            altered[index] ^= bit
            with pytest.raises(StreamIntegrityError):
                read_all(bytes(altered))


@pytest.mark.parametrize("order", [[0, 2], [1, 0, 2], [0, 1, 1, 2], [0, 1]],
                         ids=["dropped", "reordered", "duplicated", "last-dropped"])
def test_dropped_reordered_or_duplicated_frames(order: list[int]) -> None:
    """Any change to the sequence of frames fails the trailer check."""
    frames, trailer = signed_stream()
    with pytest.raises(StreamIntegrityError, match="does not cover"):
        read_all(b"".join(frames[i] for i in order) + trailer)


def test_cut_before_the_trailer() -> None:
    """A stream that ends without its trailer (even mid-frame) fails at finish()."""
    frames, _ = signed_stream()
    for data in (b"".join(frames), b"".join(frames)[:-3], b""):
        reader = stream.StreamReader(REQUEST_DIGEST, MINER.public_key.raw)
        reader.feed(data)
        with pytest.raises(StreamIntegrityError, match="without its signed trailer"):
            reader.finish()


def test_data_after_the_trailer() -> None:
    """Bytes after the trailer fail, in the same chunk or a later one."""
    with pytest.raises(StreamIntegrityError, match="after the stream trailer"):
        read_all(WHOLE + b"\x01")
    reader = stream.StreamReader(REQUEST_DIGEST, MINER.public_key.raw)
    reader.feed(WHOLE)
    with pytest.raises(StreamIntegrityError, match="after the stream trailer"):
        reader.feed(b"\x01\x00\x00\x00\x00")


def test_unknown_kind_and_oversized_frames() -> None:
    """An unknown kind or a length over max_frame fails as soon as the header is read."""
    reader = stream.StreamReader(REQUEST_DIGEST, MINER.public_key.raw, max_frame=16)
    with pytest.raises(StreamIntegrityError, match="kind 3"):
        reader.feed(b"\x03\x00\x00\x00\x00")
    reader = stream.StreamReader(REQUEST_DIGEST, MINER.public_key.raw, max_frame=16)
    reader.feed(stream.encode_frame(stream.DATA, b"x" * 16))
    with pytest.raises(StreamIntegrityError, match="length 17"):
        reader.feed(b"\x01\x00\x00\x00\x11")


def test_malformed_trailer() -> None:
    """A trailer frame of the wrong length is refused."""
    with pytest.raises(StreamIntegrityError, match="malformed stream trailer"):
        read_all(stream.encode_frame(stream.TRAILER, b"\x00" * 73))


def test_trailer_by_another_key_or_for_another_request() -> None:
    """A trailer signed by another miner, or for another request, fails."""
    frames, trailer = signed_stream(key=OTHER)
    with pytest.raises(StreamIntegrityError, match="does not cover"):
        read_all(b"".join(frames) + trailer)
    frames, trailer = signed_stream(request_digest=envelope.sha256(b"another"))
    with pytest.raises(StreamIntegrityError, match="does not cover"):
        read_all(b"".join(frames) + trailer)


def test_error_frame_then_trailer() -> None:
    """An ERROR frame is returned like a DATA frame and covered by the trailer's status."""
    error = ErrorBody("handler_failed", "the handler failed mid-stream")
    frames, trailer = signed_stream(CHUNKS[:1], error=error, status=500)
    got, receipt = read_all(b"".join(frames) + trailer)
    assert [f.kind for f in got] == [stream.DATA, stream.ERROR]
    assert ErrorBody.decode(got[1].payload) == error
    assert receipt.status == 500


def test_only_the_trailer_may_follow_an_error_frame() -> None:
    """A DATA or second ERROR frame after an ERROR frame fails (SPEC.md §3.6)."""
    error = ErrorBody("handler_failed", "x").encode()
    for after in (stream.DATA, stream.ERROR):
        signer = stream.StreamSigner(MINER, REQUEST_DIGEST)
        data = signer.frame(stream.ERROR, error) + signer.frame(after, CHUNKS[0])
        with pytest.raises(StreamIntegrityError, match="only the trailer may follow"):
            read_all(data + signer.trailer(500, TS)[0])


def test_signer_refuses_frames_after_the_trailer() -> None:
    """The signer refuses a trailer kind through frame() and any frame once closed."""
    signer = stream.StreamSigner(MINER, REQUEST_DIGEST)
    with pytest.raises(ValueError, match="frame kind"):
        signer.frame(stream.TRAILER, b"")
    signer.trailer(200, TS)
    with pytest.raises(ValueError, match="closed"):
        signer.frame(stream.DATA, b"")


# --- the client against real and fake servers -------------------------------------------------

Behaviour = Callable[[web.Request, web.StreamResponse, list[bytes], bytes], Awaitable[None]]


@asynccontextmanager
async def fake_stream_miner(key: Keypair, behaviour: Behaviour) -> AsyncIterator[str]:
    """Serve /v1/echo_stream from a raw app whose ``behaviour`` sends frames signed by ``key``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        signed, _ = await verify_raw_request(request)
        frames, trailer = signed_stream(key=key, request_digest=signed.digest)
        response = web.StreamResponse(headers={"Content-Type": envelope.STREAM_TYPE})
        await response.prepare(request)
        await behaviour(request, response, frames, trailer)
        return response

    async with serve_raw(handle) as url:
        yield url


async def collect(client: Client, target: Target, repeat: int = 3,
                  route: str = "echo_stream") -> tuple[list[EchoChunk], envelope.Receipt | None]:
    """Stream ``repeat`` echo chunks; return them and the call's receipt."""
    call = client.stream(target, route, EchoRequest(text="x", repeat=repeat), EchoChunk,
                         timeouts=Timeouts(connect=2, first_byte=5, total=10))
    chunks = [chunk async for chunk in call]
    return chunks, call.receipt


async def received_before_failure(client: Client, target: Target) -> tuple[list[int], Exception]:
    """Stream until it fails; return the chunk indexes seen before and the error."""
    seen: list[int] = []
    call = client.stream(target, "echo_stream", EchoRequest(text="x", repeat=3), EchoChunk,
                         timeouts=Timeouts(connect=2, first_byte=5, total=10))

    async def drain() -> None:
        async for chunk in call:
            seen.append(chunk.index)

    with pytest.raises((StreamIntegrityError, RemoteError)) as info:
        await drain()
    assert call.receipt is None
    return seen, info.value


async def test_stream_from_a_real_miner(client: Client, target: Target) -> None:
    """A real miner's stream yields every chunk in order and a receipt from the target."""
    chunks, receipt = await collect(client, target, repeat=4)
    assert chunks == [EchoChunk(index=i, text="x") for i in range(4)]
    assert receipt is not None
    assert (receipt.status, receipt.miner_address, receipt.is_valid()) == (
        200, target.address, True)


async def _cut(_: web.Request, response: web.StreamResponse, frames: list[bytes],
               trailer: bytes) -> None:
    for frame in frames[:2]:
        await response.write(frame)
    await response.write_eof()


async def _cut_mid_frame(request: web.Request, response: web.StreamResponse,
                         frames: list[bytes], trailer: bytes) -> None:
    await response.write(frames[0] + frames[1][:4])
    assert request.transport is not None
    request.transport.close()  # drop the connection without ending the chunked body


async def _altered(_: web.Request, response: web.StreamResponse, frames: list[bytes],
                   trailer: bytes) -> None:
    tampered = frames[1][:-1] + bytes([frames[1][-1] ^ 1])  # "b" becomes "c"
    await response.write(frames[0] + tampered + frames[2] + trailer)
    await response.write_eof()


async def _appended(_: web.Request, response: web.StreamResponse, frames: list[bytes],
                    trailer: bytes) -> None:
    await response.write(b"".join(frames) + trailer + stream.encode_frame(stream.DATA, b"\xc0"))
    await response.write_eof()


async def _complete(_: web.Request, response: web.StreamResponse, frames: list[bytes],
                    trailer: bytes) -> None:
    for frame in [*frames, trailer]:
        await response.write(frame)
    await response.write_eof()


@pytest.mark.parametrize(("behaviour", "seen", "message"), [
    (_cut, [0, 1], "without its signed trailer"),
    (_cut_mid_frame, [0], ""),
    (_altered, None, "does not cover the frames"),
    (_appended, None, "after the stream trailer"),
], ids=["cut", "cut-mid-frame", "altered", "appended"])
async def test_broken_streams_fail(client: Client, miner_key: Keypair, behaviour: Behaviour,
                                   seen: list[int] | None, message: str) -> None:
    """A stream cut short, altered or with data after its trailer raises StreamIntegrityError."""
    async with fake_stream_miner(miner_key, behaviour) as url:
        got, error = await received_before_failure(client, Target(miner_key.address, url))
    assert type(error) is StreamIntegrityError
    assert message in str(error)
    # When the failure is only visible at the trailer, how many chunks came out first depends on
    # how the transport split the bytes; they are always a prefix, in order.
    assert got == (seen if seen is not None else [0, 1, 2][:len(got)])


async def test_stream_signed_by_another_key(client: Client, miner_key: Keypair,
                                            other_key: Keypair) -> None:
    """A complete stream whose trailer is signed by a key other than the target's fails."""
    async with fake_stream_miner(other_key, _complete) as url:
        _, error = await received_before_failure(client, Target(miner_key.address, url))
    assert type(error) is StreamIntegrityError


async def test_fake_miner_complete_stream_is_accepted(client: Client, miner_key: Keypair) -> None:
    """The fake miner's well-behaved stream passes, so the failures above are the tampering."""
    async with fake_stream_miner(miner_key, _complete) as url:
        chunks, receipt = await collect(client, Target(miner_key.address, url))
    assert [c.text for c in chunks] == ["a", "b", "c"]
    assert receipt is not None
    assert receipt.status == 200


@pytest.mark.parametrize(("error", "status", "code", "retry_after"), [
    (RateLimitedError("slow down", retry_after=2.0), 429, "rate_limited", 2.0),
    (HandlerError("the handler failed"), 500, "handler_failed", None),
    (ValueError("internal detail"), 500, "handler_failed", None),
], ids=["wire-error", "handler-error", "crash"])
async def test_error_frame_mid_stream(client: Client, miner_key: Keypair, error: Exception,
                                      status: int, code: str, retry_after: float | None) -> None:
    """A mid-stream failure gives the chunks so far, then RemoteError with the trailer status."""

    async def failing(ctx: CallContext, request: EchoRequest) -> AsyncIterator[EchoChunk]:
        yield EchoChunk(index=0, text=request.text)
        yield EchoChunk(index=1, text=request.text)
        raise error

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo_stream", EchoRequest, EchoChunk, failing, kind="stream")
        seen, exc = await received_before_failure(client, Target(server.address, server.url))
    assert seen == [0, 1]
    assert isinstance(exc, RemoteError)
    assert (exc.status, exc.code, exc.retry_after, exc.signed) == (status, code, retry_after, True)
    assert "internal detail" not in str(exc)


async def test_deadline_mid_stream_is_a_signed_504(caller_key: Keypair, miner: MinerServer) -> None:
    """A stream outliving the miner's deadline ends with a 504 error frame after its chunks."""
    target = Target(miner.address, miner.url)
    # Total 1.75 s sent with a clock 1 s behind: the miner stops at 0.75 s, between the chunks
    # due at 0.6 s and 0.9 s.
    async with Client(caller_key, clock=LaggingClock(1000)) as lagging:
        call = lagging.stream(target, "echo_stream", EchoRequest(text="x", repeat=5, delay_ms=300),
                              EchoChunk, timeouts=Timeouts(connect=2, first_byte=5, total=1.75))
        seen: list[int] = []

        async def drain() -> None:
            async for chunk in call:
                seen.append(chunk.index)

        with pytest.raises(RemoteError) as info:
            await drain()
    assert seen == [0, 1]
    assert (info.value.status, info.value.code, info.value.signed) == (
        504, "deadline_exceeded", True)


async def test_refused_stream_request_is_a_remote_error(client: Client,
                                                        miner: MinerServer) -> None:
    """A stream request refused before streaming (wrong receiver) is an unsigned RemoteError."""
    wrong = Target(keypair_for("nobody").address, miner.url)
    _, exc = await received_before_failure(client, wrong)
    assert isinstance(exc, RemoteError)
    assert (exc.status, exc.code, exc.signed) == (401, "wrong_receiver", False)


async def test_stream_chunks_arrive_before_the_end(client: Client, miner_key: Keypair) -> None:
    """Chunks are yielded as they arrive, before the handler has finished."""
    release = asyncio.Event()
    second_seen = asyncio.Event()

    async def gated(ctx: CallContext, request: EchoRequest) -> AsyncIterator[EchoChunk]:
        yield EchoChunk(index=0, text="a")
        await release.wait()
        yield EchoChunk(index=1, text="b")

    async with running_miner(miner_key, echo=False) as server:
        server.add_route("echo_stream", EchoRequest, EchoChunk, gated, kind="stream")
        call = client.stream(Target(server.address, server.url), "echo_stream",
                             EchoRequest(text="x"), EchoChunk)
        seen: list[str] = []
        async for chunk in call:
            seen.append(chunk.text)
            if chunk.index == 0:
                release.set()
            else:
                second_seen.set()
    assert seen == ["a", "b"]
    assert second_seen.is_set()
    assert call.receipt is not None
