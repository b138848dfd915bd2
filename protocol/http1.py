"""The query client's HTTP/1.1 transport: a keep-alive connection pool (SPEC.md §5.7).

Why not aiohttp's ``ClientSession``: a signed query is one POST with a small body and one answer,
and the session's generality (cookies, redirects, proxies, tracing, multi-dict headers, a task
per request) cost as much CPU per request as the two Ed25519 operations the query must do
(measured in ``bench/bench_wire.py``; see the README's performance section). This pool does
only what a query needs: one request at a time per connection, bodies framed by
``Content-Length`` or chunked, answers parsed by llhttp (``httptools``, the parser aiohttp and
uvicorn use), and explicit limits on what a miner may send back.

A miner is a stranger: every limit here holds against a hostile one (head size and header
count, body size through :meth:`Response.read`, a reader that is paused while the caller does
not consume). Deadlines are the caller's (``asyncio.timeout``); only the connect deadline is
applied here, because only this module knows when connecting ends.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from protocol.errors import ConfigError, ConnectFailed, QueryTimeout, RemoteError

#: Idle keep-alive connections are closed after this; servers keep them longer (ours and
#: aiohttp's: 75 s), so a reused connection is rarely one the server is closing at that moment.
DEFAULT_MAX_IDLE_S = 15.0
#: Status line and headers of one answer; receipts need ~300 bytes.
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
#: Unread body bytes held per connection before reading from the socket pauses.
READ_HIGH_WATER = 256 * 1024


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Size and limits of a :class:`Pool`."""

    #: Connections open at once, over all origins (idle ones included).
    max_connections: int = 100
    max_idle_s: float = DEFAULT_MAX_IDLE_S
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.max_idle_s <= 0 or self.max_head_bytes < 256 or self.max_headers < 8:
            raise ConfigError("max_idle_s must be positive, max_head_bytes at least 256 and "
                              "max_headers at least 8")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a target URL points: scheme, host to connect to, port, and what to send."""

    scheme: str
    host: str
    port: int
    #: The ``Host`` header value and the path prefix requests go under (no trailing slash).
    authority: str
    prefix: str


@functools.lru_cache(maxsize=4096)
def parse_origin(url: str) -> Origin:
    """Split ``http[s]://host[:port][/prefix]`` into an :class:`Origin` (cached per URL).

    Raises:
        ConnectFailed: the URL is not an absolute http or https URL with a host, or carries a
            query, fragment or user name (none has a meaning for a miner endpoint).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConnectFailed(f"target URL {url!r} is invalid: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"target URL {url!r} must be http:// or https:// with a host")
    if parts.query or parts.fragment or parts.username is not None:
        raise ConnectFailed(f"target URL {url!r} may not carry a query, fragment or user")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in parts.netloc + parts.path):
        raise ConnectFailed(f"target URL {url!r} contains spaces or non-ASCII characters")
    default = 443 if parts.scheme == "https" else 80
    return Origin(parts.scheme, parts.hostname, port or default, parts.netloc,
                  parts.path.rstrip("/"))


class Headers(Mapping[str, str]):
    """HTTP headers, looked up without regard to case; the first of repeated names wins (for
    answers and requests alike: a repeated signed or receipt header cannot help a forger, as the
    signature is checked over whichever value is read)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items  # keys already lower-case

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: carries one exchange at a time, parses its answer."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exchanges = 0  # completed exchanges; above 0 means the connection is reused
        self.idle_since = 0.0
        self._parser: Any = None
        self._head: asyncio.Future[None] | None = None
        self._head_bytes = 0
        self._header_list: dict[str, str] = {}
        self._header_count = 0
        self._header_bytes = 0
        self._got_bytes = False
        self._until_eof = False
        self._status = 0
        self._keep_alive = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: BaseException | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self.dropped = False  # closed and its place in the pool given back

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            # Nothing was asked: bytes from an idle connection mean a confused or hostile
            # server, and the connection cannot be trusted to frame the next answer.
            self._fail(ConnectFailed("the server sent data that was not asked for"))
            return
        self._got_bytes = True
        if not self._head_done():
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # a limit callback set self._error already
        except httptools.HttpParserError as exc:
            self._fail(ConnectFailed(f"the server sent a malformed HTTP answer: {exc}"))
            return
        except httptools.HttpParserUpgrade:
            self._fail(ConnectFailed("the server switched protocols; a query needs HTTP/1.1"))
            return
        if self._error is None and not self._head_done() \
                and self._head_bytes > self._pool.config.max_head_bytes:
            self._fail(ConnectFailed(
                f"answer headers exceed {self._pool.config.max_head_bytes} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self._complete and self._error is None:
            if self._until_eof and self._head_done():
                self._complete = True  # an answer without a length ends where the stream does
                self._wake()
            else:
                reason = f": {exc}" if exc else ""
                self._fail(ConnectFailed(f"the connection closed before the answer was "
                                         f"complete{reason}"), close=False)
        self._pool._forget(self)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._head_done():  # a second answer to one request
            self._fail(ConnectFailed("the server sent more than one answer"))
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here too: a head that arrives whole in one read is parsed in one feed.
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        limits = self._pool.config
        if self._header_count > limits.max_headers:
            self._fail(ConnectFailed(f"answer has more than {limits.max_headers} headers"))
            raise _Stop
        if self._header_bytes > limits.max_head_bytes:
            self._fail(ConnectFailed(f"answer headers exceed {limits.max_head_bytes} bytes"))
            raise _Stop
        self._header_list.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._header_list = {}
            self._header_count = 0
            self._header_bytes = 0
            return
        self._status = status
        self._keep_alive = self._parser.should_keep_alive()
        self._until_eof = ("content-length" not in self._header_list
                           and "transfer-encoding" not in self._header_list)
        assert self._head is not None
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._status:  # not an interim answer
            self._complete = True
            self._wake()

    # --- one exchange -----------------------------------------------------------------------

    async def exchange(self, head: bytes, body: bytes) -> Response:
        """Send one request and return once the answer's headers are in.

        Raises:
            ConnectFailed: the connection failed or the answer's head is malformed or too big.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._head = loop.create_future()
        self.transport.write(head + body)
        await self._head
        return Response(self, self._status, Headers(self._header_list))

    def _head_done(self) -> bool:
        return self._status != 0

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException, *, close: bool = True) -> None:
        if self._error is None:
            self._error = error
        for future in (self._head, self._body_waiter):
            if future is not None and not future.done():
                future.set_exception(error)
        if close and self.transport is not None:
            self.transport.abort()

    async def read_chunk(self) -> bytes:
        """The next piece of the body, ``b""`` at its end (raises as :meth:`exchange`)."""
        while not self._body:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._body_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= READ_HIGH_WATER // 4 and self.transport:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def finish(self) -> bool:
        """End the exchange; return whether the connection may carry another one."""
        # Unread body bytes or a paused reader would garble or stall the next exchange.
        reusable = (self._complete and self._error is None and self._keep_alive
                    and not self._body and not self._paused and not self.closed)
        self._parser = None
        self._head = None
        self._status = 0
        self._header_list = {}
        self._header_count = 0
        self._header_bytes = 0
        self._head_bytes = 0
        self._got_bytes = False
        self._body.clear()
        self._buffered = 0
        self._complete = False
        self.exchanges += 1
        return reusable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Stop(Exception):
    """Raised from a parser callback to stop parsing (httptools wraps it)."""


class Response:
    """An answer whose headers are in; read the body, then :meth:`release` (or ``async with``)."""

    __slots__ = ("_conn", "_released", "headers", "status")

    def __init__(self, conn: _Connection, status: int, headers: Headers) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self._released = False

    @property
    def content_length(self) -> int | None:
        """The declared body length, if any (llhttp has checked it is a valid number)."""
        value = self.headers.get("content-length")
        return int(value) if value is not None and "transfer-encoding" not in self.headers \
            else None

    async def read(self, cap: int) -> bytes:
        """The whole body, refusing more than ``cap`` bytes.

        Raises:
            RemoteError: code ``too_large`` when the body (declared or received) exceeds ``cap``.
            ConnectFailed: the connection failed before the body was complete.
        """
        declared = self.content_length
        if declared is not None and declared > cap:
            raise RemoteError(f"answer of {declared} bytes exceeds {cap}", status=self.status,
                              code="too_large")
        chunks = []
        size = 0
        while chunk := await self._conn.read_chunk():
            size += len(chunk)
            if size > cap:
                raise RemoteError(f"answer exceeds {cap} bytes", status=self.status,
                                  code="too_large")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` once it is complete."""
        return await self._conn.read_chunk()

    def release(self) -> None:
        """Hand the connection back (kept only if the answer was read whole); idempotent."""
        if not self._released:
            self._released = True
            self._conn._pool._release(self._conn)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Pool:
    """Keep-alive HTTP/1.1 connections to many origins, at most ``max_connections`` at once.

    The constructor does no I/O; :meth:`aclose` closes every connection.
    """

    def __init__(self, config: PoolConfig = PoolConfig()) -> None:
        self.config = config
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._last_sweep = time.monotonic()

    async def request(self, url: str, path: str, headers: bytes, body: bytes,
                      connect_s: float) -> Response:
        """POST ``body`` to ``url`` + ``path``; return once the answer's headers are in.

        ``headers`` are complete ``Name: value\\r\\n`` lines (without ``Host`` and
        ``Content-Length``, which are added here). A reused connection that the server closed
        before answering is retried once on a new one; a signed request is safe to resend (the
        miner's replay memory refuses a second copy of one it did receive).

        Raises:
            ConnectFailed: no connection, or it failed before the headers were in.
            QueryTimeout: phase ``connect``, when connecting took longer than ``connect_s``.
        """
        origin = parse_origin(url)
        head = (f"POST {origin.prefix}{path} HTTP/1.1\r\nHost: {origin.authority}\r\n"
                f"Content-Length: {len(body)}\r\n").encode("latin-1") + headers + b"\r\n"
        for attempt in (0, 1):
            conn = await self._acquire(origin, connect_s, fresh=attempt == 1)
            try:
                return await conn.exchange(head, body)
            except ConnectFailed:
                stale = conn.exchanges > 0 and not conn._got_bytes
                conn.finish()
                self._drop(conn)
                if not stale or attempt == 1:
                    raise
            except BaseException:
                conn.finish()
                self._drop(conn)
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- connections ------------------------------------------------------------------------

    async def _acquire(self, origin: Origin, connect_s: float, *, fresh: bool) -> _Connection:
        while True:
            if self._closed:
                raise RuntimeError("the client is closed")
            if not fresh:
                conn = self._pop_idle(origin)
                if conn is not None:
                    return conn
            if self._open >= self.config.max_connections and not self._evict_one():
                await self._wait_for_room()
                continue
            return await self._connect(origin, connect_s)

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, then cancelled: hand the room to the next waiter
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _pop_idle(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if not conn.closed and now - conn.idle_since < self.config.max_idle_s:
                return conn
            self._drop(conn)
        return None

    def _evict_one(self) -> bool:
        """Close the longest-idle connection of any origin to make room; False if none."""
        oldest: _Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        self._drop(oldest)
        return True

    async def _connect(self, origin: Origin, connect_s: float) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, origin), origin.host, origin.port, ssl=context,
                    server_hostname=origin.host if context else None)
        except TimeoutError:
            self._closed_one()
            raise QueryTimeout(f"could not connect within {connect_s} s",
                               phase="connect") from None
        except (OSError, ssl.SSLError) as exc:
            self._closed_one()
            raise ConnectFailed(f"cannot connect to {origin.authority}: {exc}") from None
        except BaseException:
            self._closed_one()
            raise
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _release(self, conn: _Connection) -> None:
        if not conn.finish() or self._closed:
            self._drop(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._wake_one()
        if conn.idle_since - self._last_sweep > self.config.max_idle_s:
            self._sweep(conn.idle_since)

    def _sweep(self, now: float) -> None:
        """Close connections idle for longer than ``max_idle_s`` (run at most that often)."""
        self._last_sweep = now
        for origin in list(self._idle):
            conns = self._idle[origin]
            keep = [c for c in conns if now - c.idle_since < self.config.max_idle_s]
            for conn in conns:
                if conn not in keep:
                    self._drop(conn)
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _drop(self, conn: _Connection) -> None:
        """Close ``conn`` and give its place back (once, however often it is called)."""
        if not conn.dropped:
            conn.dropped = True
            conn.close()
            self._closed_one()

    def _forget(self, conn: _Connection) -> None:
        """The transport closed under ``conn``: take it out of the idle lists."""
        conns = self._idle.get(conn.origin)
        if conns and conn in conns:
            conns.remove(conn)
            self._drop(conn)

    def _closed_one(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
