"""The miner's HTTP/1.1 transport: keep-alive connections parsed by llhttp (SPEC.md §4).

Why not aiohttp's web server: a signed request is one small POST and one answer, and the web
server's generality (applications, routers, middlewares, multi-dict headers, request and
response objects built for any use) cost the miner ~100 µs per request, about as much as the
Ed25519 verify and sign it must do (measured in ``bench/bench_wire.py``; see the README's
performance section). This module does only what the miner needs: requests parsed by llhttp
(``httptools``, in its strict mode: conflicting lengths, bad chunking and bare LFs are errors),
one request at a time per connection, answers framed by ``Content-Length`` or chunked.

The peer is a stranger: every limit holds against a hostile one. The request line and head are
capped (:class:`HttpConfig`), a head must arrive within ``head_timeout_s`` and an idle
connection is closed after ``keepalive_timeout_s``; request bodies are buffered only up to
``body_high_water`` before reading pauses (the application caps their size and their time);
pipelined requests wait their turn with reading paused. A handler is cancelled when its
connection closes. Requests the parser refuses get a typed error body and the connection is
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httptools

from protocol.errorbody import ErrorBody
from protocol.errors import ConfigError, MalformedError, PayloadTooLargeError, WireError
from protocol.http1 import Headers

_REASONS = {200: "OK", 100: "Continue", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Limits of the HTTP layer (the application adds its own: body size and time)."""

    max_url_bytes: int = 8 * 1024
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    body_high_water: int = 256 * 1024

    def __post_init__(self) -> None:
        if min(self.max_url_bytes, self.max_head_bytes, self.max_headers,
               self.body_high_water) < 1 or self.head_timeout_s <= 0 \
                or self.keepalive_timeout_s <= 0:
            raise ConfigError("HTTP limits and timeouts must be positive")


class BodyError(MalformedError):
    """The request body could not be read (the connection closed, or the framing broke)."""


class Body:
    """A request body as it arrives; ``read`` waits for more, ``is_eof`` says it is complete."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BodyError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def is_eof(self) -> bool:
        """Whether the whole body has arrived (it may still be unread)."""
        return self._eof

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body; ``b""`` once it has all been read.

        Raises:
            BodyError: the connection closed or the chunked framing broke first.
        """
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        if len(chunk) > limit:
            self._chunks.appendleft(chunk[limit:])
            chunk = chunk[:limit]
        self._buffered -= len(chunk)
        self._conn._body_consumed(self._buffered)
        return chunk

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _fail(self, error: BodyError) -> None:
        if not self._eof and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(slots=True)
class Request:
    """One parsed request: its head, and its body as it arrives."""

    method: str
    path: str
    headers: Headers
    body: Body
    _conn: _Connection

    @property
    def content_length(self) -> int | None:
        """The declared body length (llhttp has checked it), unless the body is chunked."""
        value = self.headers.get("content-length")
        if value is None or "transfer-encoding" in self.headers:
            return None
        return int(value)

    async def start_stream(self, status: int, headers: Mapping[str, str]) -> StreamWriter:
        """Send the answer's head now and return a writer for its chunked body."""
        writer = StreamWriter(self._conn)
        self._conn._write(self._conn._head(status, headers, length=None))
        return writer


@dataclass(frozen=True, slots=True)
class Response:
    """A whole answer."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class StreamWriter:
    """The body of a streamed answer, sent chunk by chunk with the transport's back-pressure."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.finished = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one chunk; waits while the peer is not reading.

        Raises:
            ConnectionResetError: the connection closed.
        """
        if data:
            self._conn._write(b"%x\r\n%b\r\n" % (len(data), data))
            await self._conn._drain()

    async def finish(self) -> None:
        """End the body (the last chunk); the connection may then carry the next request."""
        if not self.finished:
            self.finished = True
            self._conn._write(b"0\r\n\r\n")
            await self._conn._drain()


Handler = Callable[[Request], Awaitable["Response | StreamWriter"]]


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and serves them one at a time, in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._config = server.config
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request, bool]] = deque()  # (request, keep-alive)
        self._current: Request | None = None  # whose body the parser is feeding
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._broken = False  # the parser refused the input: nothing more is read
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        #: When this connection is closed unless something happens first (None: never). The
        #: server's sweeper enforces it: one timer per server, not two per request.
        self.deadline: float | None = None
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._raw_head_bytes = 0  # bytes received since the last complete head
        self._head_bytes = 0  # of parsed header fields, in the current head
        self._header_count = 0
        self._in_head = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connections.add(self)
        self._arm(self._config.keepalive_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._closing or self._broken:
            return
        if self._current is None:  # not in a body: these bytes are (part of) a head
            self._raw_head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            self._refuse(error if isinstance(error, WireError)
                         else MalformedError("the request could not be parsed"))
        except httptools.HttpParserUpgrade:
            # An offer to upgrade (curl --http2 sends "Upgrade: h2c") is declined by answering
            # in HTTP/1.1; llhttp parses nothing after such a head, so the connection closes
            # after this answer (requests with a body were refused in on_headers_complete).
            self._broken = True
            if self._current is not None:
                self._current.body._feed_eof()
                self._current = None
        except httptools.HttpParserError as exc:
            self._refuse(MalformedError(f"malformed HTTP request: {exc}"))
        else:
            # A head that never completes (one endless header line, say) is caught here; the
            # fields of one that does are counted in on_header.
            if self._in_head and self._raw_head_bytes > self._config.max_head_bytes:
                self._refuse(PayloadTooLargeError(
                    f"request head exceeds {self._config.max_head_bytes} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._disarm()
        self._server._connections.discard(self)
        error = BodyError("the connection closed before the body was complete")
        if self._current is not None:
            self._current.body._fail(error)
        for request, _ in self._queue:
            request.body._fail(error)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # nobody is left to answer: stop the work
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("the connection closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url.clear()
        self._headers = {}
        self._head_bytes = 0
        self._header_count = 0
        self._arm(self._config.head_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._config.max_url_bytes:
            raise PayloadTooLargeError(f"request target exceeds {self._config.max_url_bytes} "
                                       "bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._header_count > self._config.max_headers:
            raise PayloadTooLargeError(f"more than {self._config.max_headers} request headers")
        if self._head_bytes > self._config.max_head_bytes:
            raise PayloadTooLargeError(f"request head exceeds {self._config.max_head_bytes} "
                                       "bytes")
        self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._raw_head_bytes = 0
        method = self._parser.get_method()
        if method == b"CONNECT":
            raise MalformedError("CONNECT is not served: this is not a proxy")
        if self._parser.should_upgrade() and ("content-length" in self._headers
                                             or "transfer-encoding" in self._headers):
            raise MalformedError("an upgrade offer with a body is not served")
        self._in_head = False
        self._disarm()  # the body's time is the application's to bound
        target = self._url.decode("latin-1")
        path = target.split("?", 1)[0]
        request = Request(method.decode("latin-1"), path,
                          Headers(self._headers), Body(self), self)
        self._current = request
        if self._headers.get("expect", "").lower() == "100-continue":
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._task is None:
            self._task = self._loop.create_task(self._serve_queue())
        elif len(self._queue) > 1 and not self._read_paused and self._transport is not None:
            self._read_paused = True  # pipelined: let it wait in the socket, not in memory
            self._transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._current.body._feed(body)
        if self._current.body._buffered > self._config.body_high_water \
                and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._current is not None:
            self._current.body._feed_eof()
            self._current = None

    # --- serving ----------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        try:
            while self._queue and not self._closing:
                request, keep_alive = self._queue[0]
                await self._serve_one(request)
                self._queue.popleft()
                if not keep_alive or not request.body.is_eof() or self._broken:
                    # An unread remainder would be parsed as the next request: close instead.
                    self._close()
                    return
                self._resume_reading()
        finally:
            self._task = None
        if not self._closing:
            self._arm(self._config.keepalive_timeout_s)

    async def _serve_one(self, request: Request) -> None:
        try:
            answer = await self._server.handler(request)
        except asyncio.CancelledError:
            raise
        except Exception:  # the application answers its own errors; this is a last resort
            self._server.log_exception(request)
            answer = error_response(WireError("the server failed"), status=500,
                                    code="handler_failed")
        if isinstance(answer, StreamWriter):
            await answer.finish()
            return
        head = self._head(answer.status, answer.headers, length=len(answer.body))
        # One write, so one send(2): head and body written apart cost the peer a second wake-up.
        self._write(head if request.method == "HEAD" else head + answer.body)

    @staticmethod
    def _head(status: int, headers: Mapping[str, str], *, length: int | None) -> bytes:
        """An answer's head; its body is ``length`` bytes, or chunked when ``length`` is None."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if length is None:
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            lines.append(f"Content-Length: {length}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(data)

    async def _drain(self) -> None:
        if self._closing:
            raise ConnectionResetError("the connection closed")
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def _body_consumed(self, buffered: int) -> None:
        if buffered <= self._config.body_high_water // 4 and len(self._queue) <= 1:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self._closing:
            self._read_paused = False
            self._transport.resume_reading()

    def _refuse(self, error: WireError) -> None:
        """Answer a request the parser refused and close; a request being served whose body
        broke gets the error from its body reads, is answered, and then the connection closes."""
        self._broken = True
        self._disarm()
        if self._task is not None:
            if self._current is not None:
                self._current.body._fail(BodyError(str(error)))
            return
        if not self._closing:
            answer = error_response(error)
            self._write(self._head(answer.status, {**answer.headers, "Connection": "close"},
                                   length=len(answer.body)) + answer.body)
        self._close()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            self._disarm()
            if self._transport is not None:
                self._transport.close()

    def _arm(self, seconds: float) -> None:
        self.deadline = self._loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = None

    def expire(self, now: float) -> None:
        """Close the connection if its deadline has passed while it was idle or mid-head."""
        if self.deadline is not None and now >= self.deadline and self._task is None:
            self._close()

    def abort(self) -> None:
        """Close at once (server shutdown)."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()


def error_response(error: WireError, *, status: int | None = None,
                   code: str | None = None) -> Response:
    """The unsigned error answer for ``error`` (SPEC.md §3.7)."""
    body = ErrorBody.from_error(error)
    if code is not None:
        body = ErrorBody(code, body.message, body.retry_after)
    return Response(status or error.status, body.encode(),
                    {"Content-Type": "application/msgpack"})


class HttpServer:
    """Serves ``handler`` on a TCP port. The constructor does no I/O; :meth:`start` binds."""

    def __init__(self, handler: Handler, config: HttpConfig = HttpConfig(), *,
                 log_exception: Callable[[Request], None] = lambda request: None) -> None:
        self.handler = handler
        self.config = config
        self.log_exception = log_exception
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # Deadlines are checked this often: a slow head or an idle connection lives at most
        # this much past its limit.
        self._sweep_s = min(1.0, max(0.05, min(config.head_timeout_s,
                                               config.keepalive_timeout_s) / 4))

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; return the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        self._sweeper = loop.call_later(self._sweep_s, self._sweep)
        return int(self._server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self._connections):
            conn.expire(now)
        self._sweeper = loop.call_later(self._sweep_s, self._sweep)

    async def aclose(self) -> None:
        """Stop listening, cancel every handler and close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
