"""The miner server: a thin adapter between the HTTP/1.1 transport (:mod:`protocol.http1_server`)
and the pure protocol checks (SPEC.md §4).

Pipeline for ``POST /v1/<route>``, cheapest checks first so strangers cost little:

1. route lookup (404), header syntax and version (400/401), freshness (401) and deadline (504),
   receiver (401), subnet and caller policy (403) — headers only;
2. body read with a size cap (413);
3. body digest, signature (401), replay check (401), the per-caller rate limit (429), and only
   then the replay memory: the bucket is keyed by the caller, so only a request the caller really
   signed, and not a replay of one, may spend its tokens (otherwise anyone could lock a validator
   out by naming it), and a request refused for its rate takes no memory;
4. message decoding with typed field checks (400 naming the field, 413 for limits);
5. admission: concurrency limit with a stake-ordered queue (503 when full);
6. the handler, cancelled when the request's deadline passes (504); blocking handlers run in a
   bounded thread pool, never on the event loop;
7. the answer, with a receipt signed by the miner over (request digest, status, body digest).

Errors found once the body digest is known are signed too; earlier ones cannot be (there is
no request digest yet) and clients treat them as unverified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from miners.admission import Admission, AdmissionConfig
from miners.metrics import MinerMetrics
from protocol import codec, envelope, stream
from protocol.client import endpoint_url
from protocol.clock import Clock, SystemClock
from protocol.errorbody import ErrorBody, retry_after_header
from protocol.errors import (
    DeadlineExceededError,
    ForbiddenError,
    HandlerError,
    MalformedError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    UnauthenticatedError,
    WireError,
)
from protocol.http1_server import (
    BodyError,
    HttpConfig,
    HttpServer,
    Request,
    Response,
    StreamWriter,
)
from protocol.keys import Keypair, encode_address
from protocol.ratelimit import RateLimitConfig, RateLimiter
from protocol.replay import ReplayConfig, ReplayGuard
from protocol.schema import Message

log = logging.getLogger("ensemble.miner")

# Ten minutes is longer than any single generation should take; longer deadlines are refused
# so a caller cannot pin a slot indefinitely.
DEFAULT_MAX_DEADLINE_MS = 600_000
DEFAULT_EXECUTOR_WORKERS = 4
# A body is read before its signature can be checked, so a stranger decides how slowly it
# arrives. Honest bodies (at most 1 MiB) arrive well within this even on a slow link.
DEFAULT_BODY_TIMEOUT_S = 10.0
# Bodies still arriving at once; each may hold up to ``max_body`` bytes until it is complete.
DEFAULT_MAX_BODY_READS = 128


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything a miner server needs to know, passed in (no environment reads)."""

    host: str = "127.0.0.1"
    port: int = 0
    netuid: int = 1
    limits: codec.Limits = codec.DEFAULT_LIMITS
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    max_deadline_ms: int = DEFAULT_MAX_DEADLINE_MS
    executor_workers: int = DEFAULT_EXECUTOR_WORKERS
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_body_reads: int = DEFAULT_MAX_BODY_READS
    http: HttpConfig = field(default_factory=HttpConfig)


class CallerPolicy(Protocol):
    """Decides who may call and how urgent their work is (the stake source is pluggable)."""

    def admit(self, caller: bytes, netuid: int) -> float:
        """Return the caller's priority (its stake), or raise ForbiddenError."""
        ...


class OpenPolicy:
    """Everyone may call, all with priority 0 (tests and private deployments)."""

    def admit(self, caller: bytes, netuid: int) -> float:
        """Admit anyone with priority 0."""
        return 0.0


class StakePolicy:
    """Admit callers whose stake (from ``stake_of``) is at least ``min_stake``; priority = stake.

    ``stake_of`` returns ``None`` for unknown (unregistered) callers, who are refused.
    """

    def __init__(self, stake_of: Callable[[bytes], float | None], min_stake: float = 0.0) -> None:
        self._stake_of = stake_of
        self._min_stake = min_stake

    def admit(self, caller: bytes, netuid: int) -> float:
        """Return the stake, or raise ForbiddenError for unknown or low-stake callers."""
        stake = self._stake_of(caller)
        if stake is None:
            raise ForbiddenError("caller is not registered on this subnet", code="unregistered")
        if stake < self._min_stake:
            raise ForbiddenError(f"caller stake {stake} is below the minimum {self._min_stake}",
                                 code="low_stake")
        return stake


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows about the request it serves."""

    caller: str
    netuid: int
    deadline_ms: int
    request_digest: bytes
    priority: float
    #: Set when the deadline passes or the server stops; blocking handlers should poll it.
    cancelled: threading.Event


HandlerKind = Literal["async", "blocking", "stream"]
AsyncHandler = Callable[[CallContext, Any], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class Route:
    """A registered message type: its request/response types and handler."""

    name: str
    request_type: type[Message]
    response_type: type[Message]
    handler: Callable[..., Any]
    kind: HandlerKind


@dataclass(slots=True)
class _Exchange:
    """Per-request state collected along the pipeline."""

    arrived: float
    route: Route | None = None
    signed: envelope.SignedRequest | None = None
    priority: float = 0.0


class MinerServer:
    """Serves registered routes over signed HTTP. Use ``async with MinerServer(...) as s``.

    The constructor does no I/O; :meth:`start` binds the port and :meth:`aclose` stops.
    """

    def __init__(self, keypair: Keypair, config: ServerConfig = ServerConfig(), *,
                 policy: CallerPolicy | None = None, clock: Clock | None = None) -> None:
        self.keypair = keypair
        self.config = config
        self.metrics = MinerMetrics()
        self._policy: CallerPolicy = policy or OpenPolicy()
        self._clock: Clock = clock or SystemClock()
        self._routes: dict[str, Route] = {}
        self._replay = ReplayGuard(config.replay)
        self._limiter = RateLimiter(config.rate_limit)
        self._admission = Admission(config.admission)
        self._http: HttpServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._port: int | None = None
        self._stopping = threading.Event()
        self._body_reads = 0  # bodies still arriving (see _read_body)

    # --- registration and lifecycle ---------------------------------------------------------

    def add_route(self, name: str, request_type: type[Message], response_type: type[Message],
                  handler: Callable[..., Any], kind: HandlerKind = "async") -> None:
        """Register ``handler`` for ``POST /v1/<name>``.

        ``async`` handlers are coroutines ``(ctx, request) -> response``; ``blocking`` ones are
        plain functions run in the thread pool; ``stream`` ones are async generators yielding
        ``response_type`` chunks.
        """
        envelope.check_route(envelope.ROUTE_PREFIX + name)
        self._routes[name] = Route(name, request_type, response_type, handler, kind)

    def set_policy(self, policy: CallerPolicy) -> None:
        """Replace the caller policy (e.g. once the metagraph is loaded)."""
        self._policy = policy

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """The miner's hotkey address."""
        return self.keypair.address

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return endpoint_url(self.config.host, self.port)

    async def start(self) -> None:
        """Bind and start serving."""
        self._executor = ThreadPoolExecutor(self.config.executor_workers,
                                            thread_name_prefix="miner-handler")
        self._http = HttpServer(self._dispatch, self.config.http,
                                log_exception=lambda request: log.exception(
                                    "unhandled error serving %s %s", request.method,
                                    request.path))
        self._port = await self._http.start(self.config.host, self.config.port)

    async def aclose(self) -> None:
        """Stop accepting, cancel in-flight work and release the thread pool."""
        self._stopping.set()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> MinerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- dispatch and the unauthenticated endpoints ------------------------------------------

    async def _dispatch(self, request: Request) -> Response | StreamWriter:
        path, method = request.path, request.method
        if method == "POST" and path.startswith(envelope.ROUTE_PREFIX):
            return await self._handle(request, path[len(envelope.ROUTE_PREFIX):])
        if method in ("GET", "HEAD") and path == "/health":
            return self._health()
        if method in ("GET", "HEAD") and path == "/metrics":
            return self._metrics()
        return self._error_response(NotFoundError(f"no route {method} {path}"), None)

    def _health(self) -> Response:
        body = json.dumps({"status": "ok", "hotkey": self.address, "routes": sorted(self._routes),
                           "queue_depth": self._admission.queue_depth,
                           "in_flight": self._admission.active}).encode()
        return Response(200, body, {"Content-Type": "application/json; charset=utf-8"})

    def _metrics(self) -> Response:
        self.metrics.queue_depth.set(self._admission.queue_depth)
        self.metrics.in_flight.set(self._admission.active)
        return Response(200, self.metrics.render(),
                        {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # --- the signed pipeline ------------------------------------------------------------------

    async def _handle(self, request: Request, name: str) -> Response | StreamWriter:
        ex = _Exchange(arrived=self._clock.monotonic())
        try:
            return await self._pipeline(request, ex, name)
        except WireError as exc:
            self.metrics.rejections.labels(exc.code).inc()
            return self._error_response(exc, ex)
        finally:
            name = ex.route.name if ex.route else "unknown"
            self.metrics.observe(name, self._clock.monotonic() - ex.arrived)

    async def _pipeline(self, request: Request, ex: _Exchange,
                        name: str) -> Response | StreamWriter:
        ex.route = self._lookup(name)
        header, signature = envelope.parse_request_headers(
            envelope.ROUTE_PREFIX + ex.route.name, request.headers)
        ex.priority = self._check_header(header)
        body = await self._read_body(request, header.deadline_ms)
        ex.signed = envelope.verify_request(header, signature, body, self.keypair.public_key.raw)
        # Replay check, then the rate limit, then memory: a replay never spends the caller's
        # tokens, and a request the rate limit refuses never takes a place in the replay memory
        # (else one key could fill it, raise its horizon and lock every caller out).
        now_ms = self._clock.now_ms()
        self._replay.check(header.caller, header.nonce, header.timestamp_ms, now_ms)
        self._limiter.acquire(header.caller, self._clock.monotonic())
        self._replay.remember(header.caller, header.nonce, header.timestamp_ms, now_ms)
        message = ex.route.request_type.decode(body, self.config.limits)
        ctx = CallContext(encode_address(header.caller), header.netuid, header.deadline_ms,
                          ex.signed.digest, ex.priority, threading.Event())
        if ex.route.kind == "stream":
            return await self._serve_stream(request, ex, ctx, message)
        return await self._serve_unary(ex, ctx, message)

    def _lookup(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            raise NotFoundError(f"no route /v1/{name} on this miner")
        return route

    def _check_header(self, header: envelope.RequestHeader) -> float:
        """Header-only checks, before the body is read; returns the caller's priority."""
        now_ms = self._clock.now_ms()
        self._replay.check_fresh(header.timestamp_ms, now_ms)
        envelope.check_deadline(header, now_ms, self.config.max_deadline_ms)
        if header.receiver != self.keypair.public_key.raw:
            raise UnauthenticatedError("request is addressed to another receiver",
                                       code="wrong_receiver")
        if header.netuid != self.config.netuid:
            raise ForbiddenError(f"this miner serves subnet {self.config.netuid}",
                                 code="wrong_subnet")
        return self._policy.admit(header.caller, header.netuid)

    async def _read_body(self, request: Request, deadline_ms: int) -> bytes:
        """The body as sent, within the size cap, the request's deadline and the body timeout.

        Raises:
            MalformedError: a ``Content-Encoding`` (the signature covers the bytes sent, and a
                decoder is work a stranger could order), or a broken body (bad chunking).
            PayloadTooLargeError: the body exceeds ``limits.max_body``.
            OverloadedError: ``max_body_reads`` bodies are already arriving.
            DeadlineExceededError: the body did not arrive in time.
        """
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise MalformedError(f"Content-Encoding {encoding!r} is not accepted; send the "
                                 "body uncompressed", code="unsupported_encoding")
        cap = self.config.limits.max_body
        if request.content_length is not None and request.content_length > cap:
            raise PayloadTooLargeError(f"body of {request.content_length} bytes exceeds {cap}")
        if request.body.is_eof():
            return await self._read_capped(request, cap)  # all here already: nothing to wait for
        if self._body_reads >= self.config.max_body_reads:
            raise OverloadedError("too many request bodies are arriving at once",
                                  retry_after=1.0)
        self._body_reads += 1
        try:
            wait = min(self.config.body_timeout_s,
                       max(0.0, (deadline_ms - self._clock.now_ms()) / 1000))
            async with asyncio.timeout(wait):
                return await self._read_capped(request, cap)
        except TimeoutError:
            raise DeadlineExceededError(f"the request body did not arrive within {wait:.3g} s; "
                                        "send it at once") from None
        finally:
            self._body_reads -= 1

    @staticmethod
    async def _read_capped(request: Request, cap: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await request.body.read(64 * 1024)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLargeError(f"body exceeds {cap} bytes")
                chunks.append(chunk)
        except BodyError as exc:
            raise MalformedError(f"the request body is malformed: {exc}") from None

    async def _admit(self, ex: _Exchange, ctx: CallContext) -> None:
        """Wait for a slot until the deadline; a waiter never outlives its caller's interest."""
        if self._admission.try_acquire():
            return  # the common case: no task, no timer
        try:
            async with asyncio.timeout(self._remaining(ctx)):
                await self._admission.acquire(ctx.priority)
        except TimeoutError:
            raise DeadlineExceededError("deadline passed while queued") from None

    def _remaining(self, ctx: CallContext) -> float:
        return max(0.0, (ctx.deadline_ms - self._clock.now_ms()) / 1000)

    async def _serve_unary(self, ex: _Exchange, ctx: CallContext,
                           message: Message) -> Response:
        assert ex.route is not None
        assert ex.signed is not None
        await self._admit(ex, ctx)
        try:
            result = await self._run_handler(ex.route, ctx, message)
        finally:
            self._admission.release()
        if not isinstance(result, ex.route.response_type):
            log.error("handler %s returned %s", ex.route.name, type(result).__name__)
            raise HandlerError("handler returned the wrong message type")
        body = result.encode()
        self.metrics.count(ex.route.name, "200")
        return self._signed_response(200, body, envelope.MSGPACK_TYPE, ex.signed)

    async def _run_handler(self, route: Route, ctx: CallContext, message: Message) -> Message:
        try:
            async with asyncio.timeout(self._remaining(ctx)):
                if route.kind == "blocking":
                    loop = asyncio.get_running_loop()
                    result: Message = await loop.run_in_executor(
                        self._executor, route.handler, ctx, message)
                    return result
                return await route.handler(ctx, message)  # type: ignore[no-any-return]
        except TimeoutError:
            ctx.cancelled.set()
            raise DeadlineExceededError("deadline passed; the work was cancelled") from None
        except WireError:
            raise
        except asyncio.CancelledError:
            ctx.cancelled.set()
            raise
        except Exception:
            log.exception("handler %s failed", route.name)
            raise HandlerError("the handler failed") from None

    async def _serve_stream(self, request: Request, ex: _Exchange, ctx: CallContext,
                            message: Message) -> StreamWriter:
        assert ex.route is not None
        assert ex.signed is not None
        await self._admit(ex, ctx)
        try:
            return await self._stream_frames(request, ex.route, ex.signed, ctx, message)
        finally:
            self._admission.release()

    async def _stream_frames(self, request: Request, route: Route,
                             signed: envelope.SignedRequest, ctx: CallContext,
                             message: Message) -> StreamWriter:
        signer = stream.StreamSigner(self.keypair, signed.digest)
        response = await request.start_stream(200, {
            "Content-Type": envelope.STREAM_TYPE, envelope.H_MINER: self.address})
        status = 200
        try:
            async with asyncio.timeout(self._remaining(ctx)):
                async for chunk in route.handler(ctx, message):
                    await response.write(signer.frame(stream.DATA, chunk.encode()))
        except ConnectionResetError:
            # The caller left (a router cancelling a hedge loser, for instance): stop the work
            # quietly; there is nobody to send a trailer to.
            ctx.cancelled.set()
            self.metrics.rejections.labels("caller_left").inc()
            return response
        except TimeoutError:
            ctx.cancelled.set()
            status = await self._stream_error(response, signer, DeadlineExceededError(
                "deadline passed mid-stream; the work was cancelled"))
        except WireError as exc:
            status = await self._stream_error(response, signer, exc)
        except Exception:
            log.exception("stream handler %s failed", route.name)
            status = await self._stream_error(response, signer,
                                              HandlerError("the handler failed mid-stream"))
        trailer, _ = signer.trailer(status, self._clock.now_ms())
        await response.write(trailer)
        await response.finish()
        self.metrics.count(route.name, status)
        return response

    async def _stream_error(self, response: StreamWriter, signer: stream.StreamSigner,
                            error: WireError) -> int:
        self.metrics.rejections.labels(error.code).inc()
        await response.write(signer.frame(stream.ERROR, ErrorBody.from_error(error).encode()))
        return error.status

    # --- answers ----------------------------------------------------------------------------

    def _signed_response(self, status: int, body: bytes, content_type: str,
                         signed: envelope.SignedRequest | None,
                         extra: dict[str, str] | None = None) -> Response:
        headers = {"Content-Type": content_type}
        if signed is not None:
            receipt = envelope.Receipt.issue(self.keypair, signed.digest, status,
                                             envelope.sha256(body), self._clock.now_ms())
            headers.update(receipt.headers())
        if extra:
            headers.update(extra)
        return Response(status, body, headers)

    def _error_response(self, error: WireError, ex: _Exchange | None) -> Response:
        name = ex.route.name if ex is not None and ex.route is not None else "unknown"
        self.metrics.count(name, error.status)
        extra = ({"Retry-After": retry_after_header(error.retry_after)}
                 if error.retry_after is not None else None)
        return self._signed_response(error.status, ErrorBody.from_error(error).encode(),
                                     envelope.MSGPACK_TYPE,
                                     ex.signed if ex is not None else None, extra)
