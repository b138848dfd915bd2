"""The query client: signed requests to miners, verified receipts back (SPEC.md §5).

One pool of keep-alive HTTP/1.1 connections per client (:mod:`protocol.http1`), opened by
``async with Client(...)``; the constructor does no I/O. A query never raises for one miner's
failure: it returns a :class:`QueryResult` that is either ok (response, latency, receipt) or
carries a typed :class:`QueryError`. Three deadlines apply separately: connect, first byte
(response headers), and total; the total deadline is also sent to the miner, which cancels its
work when it passes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from protocol import envelope, http1, stream
from protocol.clock import Clock, SystemClock
from protocol.errorbody import ErrorBody
from protocol.errors import (
    AddressError,
    ConnectFailed,
    MalformedError,
    PayloadTooLargeError,
    QueryError,
    QueryTimeout,
    ReceiptError,
    RemoteError,
    StreamIntegrityError,
)
from protocol.keys import Keypair, decode_address
from protocol.schema import Message

R = TypeVar("R", bound=Message)

# A miner on the same continent answers headers well within these; validators tighten them.
DEFAULT_CONNECT_S = 3.0
DEFAULT_FIRST_BYTE_S = 10.0
DEFAULT_TOTAL_S = 30.0
#: Largest answer body the client reads before giving up (a generous multiple of a long answer).
DEFAULT_MAX_RESPONSE = 4 << 20


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Client deadlines in seconds; ``total`` is also sent to the miner as the deadline."""

    connect: float = DEFAULT_CONNECT_S
    first_byte: float = DEFAULT_FIRST_BYTE_S
    total: float = DEFAULT_TOTAL_S


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Pool size and limits of a :class:`Client`."""

    # 100 connections lets a validator fan out to a whole subnet at once without opening
    # thousands of sockets; the pool is per client, shared by all queries.
    pool_size: int = 100
    max_response: int = DEFAULT_MAX_RESPONSE
    timeouts: Timeouts = field(default_factory=Timeouts)


def endpoint_url(host: str, port: int) -> str:
    """``http://host:port`` for a host name or IP address (a bare IPv6 address bracketed)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Target:
    """A miner to query: its hotkey address and base URL (``http://host:port``)."""

    address: str
    url: str

    @property
    def public_key(self) -> bytes:
        """The raw key the answer's receipt must be signed by."""
        return decode_address(self.address)


@dataclass(frozen=True, slots=True)
class QueryResult(Generic[R]):
    """The outcome of one query: ``ok`` with response and receipt, or an ``error``."""

    target: Target
    response: R | None
    receipt: envelope.Receipt | None
    latency_s: float
    error: QueryError | None = None

    @property
    def ok(self) -> bool:
        """Whether a verified response arrived."""
        return self.error is None


class Client:
    """Signs requests with ``keypair`` and verifies every answer's receipt."""

    def __init__(self, keypair: Keypair, config: ClientConfig = ClientConfig(), *,
                 netuid: int = 1, clock: Clock | None = None) -> None:
        self._keypair = keypair
        self._config = config
        self._netuid = netuid
        self._clock: Clock = clock or SystemClock()
        self._pool: http1.Pool | None = None

    async def __aenter__(self) -> Client:
        self._pool = http1.Pool(http1.PoolConfig(max_connections=self._config.pool_size))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    @property
    def address(self) -> str:
        """The caller address requests are signed with."""
        return self._keypair.address

    # --- unary ------------------------------------------------------------------------------

    async def query(self, target: Target, route: str, message: Message,
                    response_type: type[R], *, timeouts: Timeouts | None = None) -> QueryResult[R]:
        """Send one signed request and return a verified result (never raises QueryError)."""
        t = timeouts or self._config.timeouts
        started = time.perf_counter()
        try:
            response, receipt = await self._exchange(target, route, message, response_type, t)
        except QueryError as exc:
            return QueryResult(target, None, None, time.perf_counter() - started, exc)
        return QueryResult(target, response, receipt, time.perf_counter() - started)

    async def fan_out(self, targets: Sequence[Target], route: str, message: Message,
                      response_type: type[R], *,
                      timeouts: Timeouts | None = None) -> list[QueryResult[R]]:
        """Query every target concurrently; one result per target, in the same order."""
        return list(await asyncio.gather(*(
            self.query(t, route, message, response_type, timeouts=timeouts) for t in targets)))

    async def _exchange(self, target: Target, route: str, message: Message,
                        response_type: type[R], t: Timeouts) -> tuple[R, envelope.Receipt]:
        body = message.encode()
        headers, digest = self._sign(target, route, body, t.total)
        pool = self._require_pool()
        now = asyncio.get_running_loop().time()
        total_at = now + t.total
        first_byte_at = min(now + t.first_byte, total_at)
        resp: http1.Response | None = None
        try:
            # One timer serves both deadlines: it first fires at the first-byte deadline, and
            # moves to the total deadline once the headers are in (a timer costs a heap entry
            # and a Python-level comparison per sift, on every request).
            async with asyncio.timeout_at(first_byte_at) as timer:
                resp = await pool.request(target.url, _path(route), headers, body, t.connect)
                timer.reschedule(total_at)
                async with resp:
                    data = await resp.read(self._config.max_response)
        except TimeoutError:
            if resp is None and first_byte_at < total_at:
                raise QueryTimeout(f"no response headers within {t.first_byte} s",
                                   phase="first_byte") from None
            raise QueryTimeout(f"no complete answer within {t.total} s", phase="total") from None
        return self._verify_unary(target, resp, data, digest, response_type)

    def _sign(self, target: Target, route: str, body: bytes,
              total_s: float) -> tuple[bytes, bytes]:
        """The signed request's header lines (``Name: value\\r\\n``) and its digest."""
        try:
            receiver = target.public_key
        except AddressError as exc:
            # One bad entry in a target list is that target's failure, never the fan-out's.
            raise QueryError(f"target address is invalid: {exc}") from None
        now = self._clock.now_ms()
        header = envelope.RequestHeader(
            route=envelope.ROUTE_PREFIX + route, caller=self._keypair.public_key.raw,
            receiver=receiver, netuid=self._netuid, timestamp_ms=now,
            nonce=os.urandom(envelope.NONCE_SIZE), deadline_ms=now + max(1, int(total_s * 1000)))
        headers, digest = envelope.sign_request_with_digest(self._keypair, header, body)
        # Every value is ours (digits, hex, addresses, a checked route): no CR or LF can occur.
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        return _FIXED_HEADERS + lines.encode("ascii"), digest

    async def _post(self, target: Target, route: str, body: bytes, headers: bytes,
                    t: Timeouts) -> http1.Response:
        """POST and wait for the response headers within the first-byte deadline."""
        try:
            async with asyncio.timeout(t.first_byte):
                return await self._require_pool().request(target.url, _path(route), headers,
                                                          body, t.connect)
        except TimeoutError:
            raise QueryTimeout(f"no response headers within {t.first_byte} s",
                               phase="first_byte") from None

    def _verify_unary(self, target: Target, resp: http1.Response, data: bytes,
                      request_digest: bytes, response_type: type[R]) -> tuple[R, envelope.Receipt]:
        receipt = self._receipt_or_none(resp, data, request_digest, target)
        if resp.status != 200:
            raise _remote_error(resp.status, data, signed=receipt is not None)
        if receipt is None:
            raise ReceiptError("answer is not signed by the miner; discarded")
        try:
            return response_type.decode(data), receipt
        except (MalformedError, PayloadTooLargeError) as exc:
            raise RemoteError(f"miner sent a malformed answer: {exc}", status=200,
                              code="bad_answer", signed=True) from None

    def _receipt_or_none(self, resp: http1.Response, data: bytes, request_digest: bytes,
                         target: Target) -> envelope.Receipt | None:
        """Return the verified receipt; None if absent on an error; raise if forged."""
        if envelope.H_RECEIPT_SIGNATURE not in resp.headers and resp.status != 200:
            return None
        body_digest = envelope.sha256(data)
        receipt = envelope.Receipt.from_headers(resp.headers, request_digest=request_digest,
                                                status=resp.status, body_digest=body_digest)
        receipt.verify(request_digest=request_digest, status=resp.status,
                       body_digest=body_digest, miner=target.public_key)
        return receipt

    # --- streaming --------------------------------------------------------------------------

    def stream(self, target: Target, route: str, message: Message, chunk_type: type[R], *,
               timeouts: Timeouts | None = None) -> StreamCall[R]:
        """Return an async iterator of chunks; its ``receipt`` is set at the end.

        Chunks are handed out as they arrive, so they are provisional until the iteration ends
        normally: only then has the trailer verified the whole stream (SPEC.md §3.6). A caller
        that acts on a chunk before the end must be ready to undo it. Iteration raises
        :class:`QueryError` subclasses: ``StreamIntegrityError`` when the stream is cut or
        altered, ``RemoteError`` for an error frame or status.
        """
        return StreamCall(self, target, route, message, chunk_type,
                          timeouts or self._config.timeouts)

    def _require_pool(self) -> http1.Pool:
        if self._pool is None:
            raise RuntimeError("use the client inside 'async with Client(...)'")
        return self._pool


class StreamCall(Generic[R]):
    """One streaming query. Iterate it with ``async for``; then read ``receipt``."""

    def __init__(self, client: Client, target: Target, route: str, message: Message,
                 chunk_type: type[R], timeouts: Timeouts) -> None:
        self._client = client
        self._target = target
        self._route = route
        self._message = message
        self._chunk_type = chunk_type
        self._timeouts = timeouts
        self.receipt: envelope.Receipt | None = None

    def __aiter__(self) -> AsyncIterator[R]:
        return self._run()

    async def _run(self) -> AsyncIterator[R]:
        client, t = self._client, self._timeouts
        body = self._message.encode()
        headers, digest = client._sign(self._target, self._route, body, t.total)
        deadline = asyncio.get_running_loop().time() + t.total
        resp = await client._post(self._target, self._route, body, headers, t)
        async with resp:
            if resp.status != 200:
                data = await resp.read(client._config.max_response)
                receipt = client._receipt_or_none(resp, data, digest, self._target)
                raise _remote_error(resp.status, data, signed=receipt is not None)
            reader = stream.StreamReader(digest, self._target.public_key)
            async for frame in self._frames(resp, reader, deadline):
                if frame.kind == stream.ERROR:
                    status = reader.receipt.status if reader.receipt else 0
                    self._drain_error_then_raise(frame, status)
                try:
                    yield self._chunk_type.decode(frame.payload)
                except (MalformedError, PayloadTooLargeError) as exc:
                    raise StreamIntegrityError(f"malformed stream chunk: {exc}") from None
            self.receipt = reader.finish()

    async def _frames(self, resp: http1.Response, reader: stream.StreamReader,
                      deadline: float) -> AsyncIterator[stream.Frame]:
        loop = asyncio.get_running_loop()
        pending: list[stream.Frame] = []
        error: stream.Frame | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await resp.read_chunk()
            except TimeoutError:
                raise QueryTimeout("stream did not finish within the total deadline",
                                   phase="total") from None
            except ConnectFailed as exc:
                raise StreamIntegrityError(f"stream connection failed: {exc}") from None
            if not chunk:
                break
            for frame in reader.feed(chunk):
                if frame.kind == stream.ERROR:
                    error = frame  # verified only once the trailer arrives
                else:
                    pending.append(frame)
            # DATA frames that arrived in the same read as an ERROR frame precede it (the reader
            # refuses anything but the trailer after an ERROR), so they are delivered too.
            while pending:
                yield pending.pop(0)
            if loop.time() > deadline:
                raise QueryTimeout("stream exceeded the total deadline", phase="total")
        reader.finish()
        if error is not None:
            yield error

    @staticmethod
    def _drain_error_then_raise(frame: stream.Frame, status: int) -> None:
        try:
            body = ErrorBody.decode(frame.payload)
        except MalformedError:
            raise StreamIntegrityError("malformed error frame") from None
        raise RemoteError(body.message, status=status, code=body.code,
                          retry_after=body.retry_after, signed=True)


#: Sent with every request; the signed headers follow.
_FIXED_HEADERS = (f"Content-Type: {envelope.MSGPACK_TYPE}\r\n"
                  f"User-Agent: ensemblenet/{envelope.PROTOCOL_VERSION}\r\n").encode("ascii")


@functools.lru_cache(maxsize=256)
def _path(route: str) -> str:
    """``/v1/<route>``, checked: the route goes into the request line."""
    return envelope.check_route(envelope.ROUTE_PREFIX + route)


def _remote_error(status: int, data: bytes, *, signed: bool) -> RemoteError:
    try:
        body = ErrorBody.decode(data)
    except (MalformedError, PayloadTooLargeError):
        return RemoteError(f"HTTP {status} with an unreadable body", status=status,
                           code=f"http_{status}", signed=signed)
    return RemoteError(body.message, status=status, code=body.code,
                       retry_after=body.retry_after, signed=signed)


def result_summary(result: QueryResult[Any]) -> str:
    """One-line human description of a result (for logs and the demo)."""
    if result.ok:
        return f"ok {result.latency_s * 1000:.1f} ms, receipt by {result.target.address[:12]}…"
    assert result.error is not None
    return f"{result.error.kind}: {result.error}"
