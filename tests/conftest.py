"""Fixtures of the wire-protocol tests: fixed keys, a live echo miner, a client, a raw sender.

Every key comes from a fixed seed and every nonce the raw sender draws comes from a seeded
generator, so a failure reproduces byte for byte. Servers bind 127.0.0.1 port 0 and are started
and stopped with ``async with``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from miners.echo import EchoRequest, add_echo_routes
from miners.server import CallerPolicy, MinerServer, ServerConfig
from protocol import envelope
from protocol.client import Client, Target
from protocol.clock import Clock, SystemClock
from protocol.errorbody import ErrorBody
from protocol.keys import Keypair

#: The seeds of SPEC.md §3.10's golden vectors, so logs of these tests match the spec.
CALLER_SEED = bytes(range(32))
MINER_SEED = bytes(range(32, 64))
#: Seconds any single loopback exchange may take before a test calls it a hang.
EXCHANGE_TIMEOUT_S = 10.0
#: The SPEC.md §3.7 error codes of each status family.
CODES_BY_STATUS: dict[int, frozenset[str]] = {
    400: frozenset({"malformed", "bad_header", "bad_deadline", "unsupported_version",
                    "unsupported_encoding", "empty_prompt", "bad_messages"}),
    401: frozenset({"missing_header", "bad_signature", "wrong_receiver", "stale", "future",
                    "replay"}),
    403: frozenset({"forbidden", "unregistered", "low_stake", "wrong_subnet"}),
    404: frozenset({"unknown_route"}),
    413: frozenset({"too_large", "context_length_exceeded"}),
    429: frozenset({"rate_limited"}),
    500: frozenset({"handler_failed"}),
    503: frozenset({"overloaded"}),
    504: frozenset({"deadline_exceeded"}),
}


def keypair_for(label: str) -> Keypair:
    """Return a key pair whose seed is SHA-256 of ``label`` (stable across runs)."""
    return Keypair(hashlib.sha256(label.encode()).digest())


@pytest.fixture
def caller_key() -> Keypair:
    """The caller of SPEC.md §3.10 (seed 00 01 … 1f)."""
    return Keypair(CALLER_SEED)


@pytest.fixture
def miner_key() -> Keypair:
    """The miner of SPEC.md §3.10 (seed 20 21 … 3f)."""
    return Keypair(MINER_SEED)


@pytest.fixture
def other_key() -> Keypair:
    """A third identity: an impostor miner or a stranger caller."""
    return keypair_for("other")


@asynccontextmanager
async def running_miner(keypair: Keypair, config: ServerConfig | None = None, *,
                        policy: CallerPolicy | None = None, clock: Clock | None = None,
                        echo: bool = True) -> AsyncIterator[MinerServer]:
    """Start a miner on 127.0.0.1 port 0 (with the echo routes unless ``echo`` is False)."""
    server = MinerServer(keypair, config or ServerConfig(), policy=policy, clock=clock)
    if echo:
        add_echo_routes(server)
    async with server:
        yield server


@pytest.fixture
async def miner(miner_key: Keypair) -> AsyncIterator[MinerServer]:
    """A running echo miner with default configuration and the system clock."""
    async with running_miner(miner_key) as server:
        yield server


@pytest.fixture
def target(miner: MinerServer) -> Target:
    """The running echo miner as a client target."""
    return Target(miner.address, miner.url)


@pytest.fixture
async def client(caller_key: Keypair) -> AsyncIterator[Client]:
    """A query client signing as the caller key."""
    async with Client(caller_key) as c:
        yield c


# --- raw requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed request as it goes on the wire: route name, headers and exact body."""

    route: str
    headers: dict[str, str]
    body: bytes
    digest: bytes

    def with_header(self, name: str, value: str | None) -> Signed:
        """Return a copy with header ``name`` replaced (``None`` removes it)."""
        headers = {k: v for k, v in self.headers.items() if k != name}
        if value is not None:
            headers[name] = value
        return Signed(self.route, headers, self.body, self.digest)

    def with_body(self, body: bytes) -> Signed:
        """Return a copy with another body (the signature still covers the old one)."""
        return Signed(self.route, dict(self.headers), body, self.digest)


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """An HTTP answer as received: status, headers and the exact body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def error(self) -> ErrorBody:
        """Decode the body as an error body (raises MalformedError if it is not one)."""
        return ErrorBody.decode(self.body)

    def receipt(self, request_digest: bytes) -> envelope.Receipt:
        """Rebuild the receipt the answer carries (raises ReceiptError if none)."""
        return envelope.Receipt.from_headers(self.headers, request_digest=request_digest,
                                             status=self.status,
                                             body_digest=envelope.sha256(self.body))


ECHO_BODY = EchoRequest(text="hi").encode()


@dataclass
class RawSender:
    """Signs requests field by field and posts exact bytes, so tests can tamper with anything."""

    session: aiohttp.ClientSession
    keypair: Keypair
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=lambda: random.Random(20260101))

    def nonce(self) -> bytes:
        """A fresh nonce from the seeded generator."""
        return self.rng.randbytes(envelope.NONCE_SIZE)

    def sign(self, receiver: bytes, body: bytes = ECHO_BODY, *, route: str = "echo",
             keypair: Keypair | None = None, timestamp_ms: int | None = None,
             deadline_ms: int | None = None, nonce: bytes | None = None,
             netuid: int = 1) -> Signed:
        """Return a request signed exactly as a client would (defaults: now, 30 s deadline)."""
        pair = keypair or self.keypair
        ts = self.clock.now_ms() if timestamp_ms is None else timestamp_ms
        header = envelope.RequestHeader(
            route=envelope.ROUTE_PREFIX + route, caller=pair.public_key.raw, receiver=receiver,
            netuid=netuid, timestamp_ms=ts, nonce=self.nonce() if nonce is None else nonce,
            deadline_ms=ts + 30_000 if deadline_ms is None else deadline_ms)
        headers = envelope.sign_request(pair, header, body)
        digest = envelope.sha256(header.canonical(envelope.sha256(body)))
        return Signed(route, headers, body, digest)

    async def post(self, url: str, signed: Signed, *, path: str | None = None,
                   timeout_s: float = EXCHANGE_TIMEOUT_S) -> RawAnswer:
        """POST ``signed`` to ``url`` (at ``/v1/<route>`` unless ``path`` is given)."""
        full = url + (path if path is not None else envelope.ROUTE_PREFIX + signed.route)
        async with asyncio.timeout(timeout_s), self.session.post(
                full, data=signed.body, headers=signed.headers) as resp:
            body = await resp.read()
            return RawAnswer(resp.status, CIMultiDict(resp.headers), body)

    async def send(self, server: MinerServer, body: bytes = ECHO_BODY,
                   **kwargs: object) -> tuple[Signed, RawAnswer]:
        """Sign a request for ``server`` (keyword arguments as :meth:`sign`) and post it."""
        signed = self.sign(server.keypair.public_key.raw, body, **kwargs)  # type: ignore[arg-type]
        return signed, await self.post(server.url, signed)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (no decompression, so bodies arrive byte for byte)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture
def raw(http: aiohttp.ClientSession, caller_key: Keypair) -> RawSender:
    """A raw sender signing as the caller key with the system clock."""
    return RawSender(http, caller_key)


# --- fake miners ----------------------------------------------------------------------------


@asynccontextmanager
async def serve_raw(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                    path: str = "/v1/{route}") -> AsyncIterator[str]:
    """Serve ``POST path`` with a bare aiohttp ``handler`` (a fake miner); yield its base URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def verify_raw_request(request: web.Request) -> tuple[envelope.SignedRequest, bytes]:
    """What a fake miner does first: read and verify a signed request; return it and the body."""
    body = await request.read()
    header, signature = envelope.parse_request_headers(request.path, request.headers)
    return envelope.verify_request(header, signature, body, header.receiver), body


class LaggingClock(SystemClock):
    """A caller clock running behind, so the miner's deadline passes before the client's own."""

    def __init__(self, lag_ms: int) -> None:
        self._lag_ms = lag_ms

    def now_ms(self) -> int:
        """The system time minus the lag."""
        return super().now_ms() - self._lag_ms


# --- waiting without sleeping for a guess ---------------------------------------------------


async def wait_until(probe: Callable[[], Awaitable[bool]], *, attempts: int = 5000) -> None:
    """Re-run ``probe`` (a loopback round trip, so it yields) until it holds; bounded."""
    for _ in range(attempts):
        if await probe():
            return
    raise AssertionError(f"condition not reached after {attempts} probes")


async def health(session: aiohttp.ClientSession, server: MinerServer) -> dict[str, object]:
    """GET /health and return its JSON (asserting 200)."""
    async with asyncio.timeout(EXCHANGE_TIMEOUT_S), session.get(server.url + "/health") as resp:
        assert resp.status == 200
        data: dict[str, object] = await resp.json()
        return data


def closed_port() -> int:
    """Return a loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """Closes every server, client, router and ledger the test opened (in reverse order)."""
    async with AsyncExitStack() as s:
        yield s
