"""The chain node: an HTTP service (aiohttp) around an embedded chain and its block timer.

``ChainNode`` owns one chain file (through :func:`protocol.ledger.connect.run_embedded`: an
exclusive lock, :meth:`Chain.open`, a :class:`BlockTimer`) and answers the HTTP API of
docs/spec-ledger.md §17. It is a thin adapter: every rule lives in the engine; this module
parses paths and parameters, maps errors to statuses and encodes answers
(:mod:`protocol.ledger.api_wire`, :mod:`protocol.ledger.metagraph_wire`).

Guarantees:

* every answer to bad input is a typed error body (:class:`protocol.errorbody.ErrorBody`
  shape) with a 4xx status, never a 500; bodies over the transaction size cap get 413 before
  they are read in full; every request runs under a timeout (504);
* a transaction is *acknowledged* (``GET /v1/tx/{hash}`` answers ``applied``) only once the
  block holding it is committed to disk;
* stopping (``aclose``) first stops accepting requests, then lets a block in production finish
  its commit, then closes the chain and releases the file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from protocol.client import endpoint_url
from protocol.clock import Clock, SystemClock
from protocol.errorbody import ErrorBody, retry_after_header
from protocol.errors import AddressError, ConfigError, RateLimitedError, WireError
from protocol.keys import Keypair, decode_address
from protocol.ledger.api_wire import (
    ChainDescription,
    Head,
    account_to_wire,
    chain_to_wire,
    head_to_wire,
    neuron_to_wire,
    outcome_to_wire,
    pack_answer,
    receipt_to_wire,
    subnet_to_wire,
    subnets_to_wire,
)
from protocol.ledger.chain import BlockResult, ChainConfig
from protocol.ledger.connect import EmbeddedChain, run_embedded
from protocol.ledger.errors import (
    ChainClosedError,
    NoSuchItemError,
    Reason,
    TxRejected,
    WaitTimeout,
)
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.metagraph_wire import metagraph_to_wire
from protocol.ledger.tx import MAX_TX_BYTES, decode_tx
from protocol.ledger.wire import U16_MAX, U64_MAX
from protocol.ratelimit import RateLimitConfig, RateLimiter

__all__ = ["MSGPACK", "ChainNode", "NodeConfig", "NodeMetrics", "submit_status"]

log = logging.getLogger("ensemble.chain")

MSGPACK = "application/msgpack"
#: The default port of a chain node (the miner default is 8091; keep them apart).
DEFAULT_PORT = 8700
_DECIMAL = re.compile(r"[0-9]{1,20}")
_HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")
# Block production times from a 1 ms empty dev block to a 10 s block of heavy epochs.
_BLOCK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How a node serves. The chain itself is configured by :class:`ChainConfig`.

    Attributes:
        host, port: where to listen (port 0: any free port, see :attr:`ChainNode.port`).
        dev: create a dev chain if the file does not exist (an existing file's genesis
            decides); ignored when a ``ChainConfig`` is given.
        block_time: seconds between blocks (``None``: 1 s on dev chains, 12 s otherwise);
            ignored when a ``ChainConfig`` is given.
        long_poll_max: the most seconds one long-poll (``?wait=``, ``?timeout=``) is held;
            longer requests are shortened to it, so a client cannot pin connections forever.
        request_timeout: seconds any request may take in total, body upload included
            (504 beyond); must exceed ``long_poll_max``.
        max_tx_bytes: the largest ``POST /v1/tx`` body (413 beyond).
        rate_limit: requests per second (and burst) per client IP address, 429 beyond;
            ``None``: no limit.
        limit_loopback: whether clients on this machine (127.0.0.0/8, ::1) are limited too;
            off by default, because a local network's every process shares one address.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    dev: bool = False
    block_time: float | None = None
    long_poll_max: float = 30.0
    request_timeout: float = 60.0
    max_tx_bytes: int = MAX_TX_BYTES
    # 50 requests/s with bursts of 200 per address: a miner, validator or router follows the
    # chain with a few requests per block; a flood from one address cannot starve the others
    # or the block timer.
    rate_limit: RateLimitConfig | None = field(
        default_factory=lambda: RateLimitConfig(rate=50.0, burst=200.0))
    limit_loopback: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= U16_MAX:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.block_time is not None and not (
                math.isfinite(self.block_time) and self.block_time > 0):
            raise ConfigError("block_time must be a positive number of seconds")
        if not 0 < self.long_poll_max < self.request_timeout:
            raise ConfigError("need 0 < long_poll_max < request_timeout")
        if self.max_tx_bytes < 1:
            raise ConfigError("max_tx_bytes must be positive")


class NodeMetrics:
    """Prometheus metrics of one node, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.height = Gauge("ensemble_chain_height", "Height of the last committed block",
                            registry=self.registry)
        self.accepted = Counter("ensemble_chain_txs_accepted",
                                "Transactions accepted into the mempool",
                                registry=self.registry)
        self.rejected = Counter("ensemble_chain_txs_rejected",
                                "Transactions rejected, by stage (submit or block) and reason",
                                ["stage", "reason"], registry=self.registry)
        self.included = Counter("ensemble_chain_txs_included",
                                "Transactions committed in a block", registry=self.registry)
        self.block_seconds = Histogram("ensemble_chain_block_production_seconds",
                                       "Time to build, sign and durably commit a block",
                                       buckets=_BLOCK_BUCKETS, registry=self.registry)
        self.requests = Counter("ensemble_chain_http_requests",
                                "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class _ApiError(WireError):
    """An error answer with its status (the node's statuses go beyond the miner's classes)."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.status = status


def submit_status(reason: Reason) -> int:
    """The HTTP status of a transaction refused at submit (spec §17)."""
    if reason is Reason.MALFORMED:
        return 400
    if reason is Reason.BAD_SEQUENCE:
        return 409
    if reason is Reason.MEMPOOL_FULL:
        return 503
    return 422


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ChainNode:
    """The chain node service. ``async with ChainNode(path, config) as node: ...``.

    The constructor does no I/O; :meth:`start` locks and opens the chain, starts the block
    timer and binds the port; :meth:`aclose` undoes it all (see the module docstring).
    """

    def __init__(self, db_path: str | Path, config: NodeConfig | None = None, *,
                 node_key: Keypair | None = None, chain_config: ChainConfig | None = None,
                 clock: Clock | None = None) -> None:
        self.db_path = Path(db_path)
        self.config = config or NodeConfig()
        self.metrics = NodeMetrics()
        self._node_key = node_key
        self._chain_config = chain_config
        self._clock: Clock = clock or SystemClock()
        self._runner: web.AppRunner | None = None
        self._embedded: EmbeddedChain | None = None
        self._port: int | None = None
        self._head: Head | None = None
        self._next_block = asyncio.Event()
        #: Set when block production failed; the node should then be stopped and restarted.
        self.failed = asyncio.Event()
        limit = self.config.rate_limit
        self._limiter = None if limit is None else RateLimiter(limit)

    # --- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application; its ``cleanup_ctx`` owns the chain for the app's lifetime."""
        app = web.Application(client_max_size=self.config.max_tx_bytes + 1,
                              middlewares=[self._errors])
        app.cleanup_ctx.append(self._chain_ctx)
        routes = (
            ("POST", "/v1/tx", self._submit),
            ("GET", "/v1/tx/{hash}", self._tx),
            ("GET", "/v1/account/{address}", self._account),
            ("GET", "/v1/subnets", self._subnets),
            ("GET", "/v1/subnet/{netuid}", self._subnet),
            ("GET", "/v1/neuron/{netuid}/{who}", self._neuron),
            ("GET", "/v1/metagraph/{netuid}", self._metagraph),
            ("GET", "/v1/blocks/head", self._blocks_head),
            ("GET", "/v1/blocks/wait", self._blocks_wait),
            ("GET", "/v1/chain", self._chain),
            ("GET", "/health", self._health),
            ("GET", "/metrics", self._metrics),
        )
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return app

    async def _chain_ctx(self, app: web.Application) -> AsyncIterator[None]:
        async with run_embedded(self.db_path, self._chain_config, dev=self.config.dev,
                                block_time=self.config.block_time, node_key=self._node_key,
                                clock=self._clock, owner="chain node starting",
                                on_block=self._on_block,
                                on_failure=lambda _exc: self.failed.set()) as embedded:
            chain = embedded.ledger.chain  # no block is in production yet: safe to read
            self._head = Head(chain.chain_id, chain.height, chain.head_hash)
            self.metrics.height.set(chain.height)
            self._embedded = embedded
            try:
                yield
            finally:
                self._embedded = None

    async def start(self) -> None:
        """Lock and open the chain, start the block timer, bind and serve.

        Raises:
            ChainInUseError, ConfigError, StoreError, CorruptChainError: see
                :func:`run_embedded`; OSError: the port cannot be bound.
        """
        # shutdown_timeout belongs to the runner (aiohttp deprecates it on the site).
        runner = web.AppRunner(self.build_app(), access_log=None, handler_cancellation=True,
                               shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except BaseException:
            await self.aclose()
            raise
        self._port = int(runner.addresses[0][1])
        if self._embedded is not None:
            self._embedded.lock.record(self.url)

    async def aclose(self) -> None:
        """Stop serving, let a block in production commit, close the chain. Idempotent."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ChainNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- properties -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise ConfigError("the node is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running node."""
        return endpoint_url(self.config.host, self.port)

    @property
    def head(self) -> Head:
        """The last committed block (after :meth:`start`)."""
        if self._head is None:
            raise ConfigError("the node is not started")
        return self._head

    @property
    def block_time(self) -> float:
        """Seconds between blocks (after :meth:`start`)."""
        return self._ledger().chain.config.block_time

    def _ledger(self) -> EmbeddedLedger:
        if self._embedded is None:
            raise _ApiError(503, "chain_stopped", "the chain is not running")
        return self._embedded.ledger

    def _on_block(self, result: BlockResult, seconds: float) -> None:
        head = self.head
        self._head = Head(head.chain_id, result.header.height, result.hash)
        self.metrics.height.set(result.header.height)
        self.metrics.block_seconds.observe(seconds)
        for outcome in result.outcomes:
            if outcome.applied:
                self.metrics.included.inc()
            else:
                reason = outcome.reason.value if outcome.reason else "unknown"
                self.metrics.rejected.labels("block", reason).inc()
        event, self._next_block = self._next_block, asyncio.Event()
        event.set()

    # --- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Every failure becomes a typed error body; every request runs under the timeout."""
        try:
            self._check_rate(request)
            async with asyncio.timeout(self.config.request_timeout):
                response = await handler(request)
        except _ApiError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, size
            response = _error_response(_http_exception(exc))
        except TimeoutError:
            response = _error_response(_ApiError(504, "deadline_exceeded",
                                                 "the request took too long"))
        except Exception:
            log.exception("chain node: %s %s failed", request.method, request.path)
            response = _error_response(_ApiError(500, "handler_failed",
                                                 "internal error (see the node's log)"))
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "unknown"
        self.metrics.requests.labels(endpoint, str(response.status)).inc()
        return response

    def _check_rate(self, request: web.Request) -> None:
        """Charge one request to the client's address (raises a 429 when its bucket is empty)."""
        peer = request.remote
        if self._limiter is None or not peer:
            return
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return  # not an IP peer (a unix socket): nothing to key on
        if address.is_loopback and not self.config.limit_loopback:
            return
        try:
            self._limiter.acquire(address.packed, self._clock.monotonic())
        except RateLimitedError as exc:
            raise _ApiError(429, "too_many_requests",
                            f"more than {self._limiter.rate:g} requests/s from {peer}",
                            retry_after=exc.retry_after) from None

    # --- transactions ---------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        body = await self._read_body(request)
        try:
            receipt = await self._ledger().submit(decode_tx(body))
        except TxRejected as exc:
            self.metrics.rejected.labels("submit", exc.reason.value).inc()
            retry = self.block_time if exc.reason is Reason.MEMPOOL_FULL else None
            raise _ApiError(submit_status(exc.reason), exc.reason.value, exc.message,
                            retry) from None
        except ChainClosedError as exc:
            raise _ApiError(503, "chain_stopped", str(exc)) from None
        self.metrics.accepted.inc()
        return _answer(receipt_to_wire(receipt), status=202)

    async def _read_body(self, request: web.Request) -> bytes:
        cap = self.config.max_tx_bytes
        if request.content_length is not None and request.content_length > cap:
            raise _ApiError(413, "too_large",
                            f"body of {request.content_length} bytes exceeds {cap}")
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise _ApiError(413, "too_large", f"body exceeds {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _tx(self, request: web.Request) -> web.Response:
        text = request.match_info["hash"]
        if not _HEX_HASH.fullmatch(text):
            raise _ApiError(400, "bad_param", "a transaction hash is 64 hex digits")
        wait = self._seconds(request, "wait", 0.0)
        try:
            outcome = await self._ledger().wait_for_tx(bytes.fromhex(text), wait)
        except WaitTimeout:
            raise _ApiError(404, "tx_not_found",
                            "no outcome: the transaction is pending, unknown, or was "
                            "rejected long ago") from None
        except ChainClosedError as exc:
            raise _ApiError(503, "chain_stopped", str(exc)) from None
        return _answer(outcome_to_wire(outcome))

    # --- queries --------------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> web.Response:
        address = _address(request.match_info["address"])
        return _answer(account_to_wire(await self._ledger().account(address)))

    async def _subnets(self, request: web.Request) -> web.Response:
        return _answer(subnets_to_wire(await self._ledger().subnets()))

    async def _subnet(self, request: web.Request) -> web.Response:
        netuid = _netuid(request.match_info["netuid"])
        return _answer(subnet_to_wire(await _found(self._ledger().subnet(netuid))))

    async def _neuron(self, request: web.Request) -> web.Response:
        netuid = _netuid(request.match_info["netuid"])
        text = request.match_info["who"]
        who: int | str = _uid(text) if text.isdigit() else _address(text)
        return _answer(neuron_to_wire(await _found(self._ledger().neuron(netuid, who))))

    async def _metagraph(self, request: web.Request) -> web.Response:
        netuid = _netuid(request.match_info["netuid"])
        return _answer(metagraph_to_wire(await _found(self._ledger().metagraph(netuid))))

    # --- blocks and chain -----------------------------------------------------------------------

    async def _blocks_head(self, request: web.Request) -> web.Response:
        return _answer(head_to_wire(self.head))

    async def _blocks_wait(self, request: web.Request) -> web.Response:
        after = (_integer(request.query["after"], "after", U64_MAX) if "after" in request.query
                 else self.head.height)
        timeout = self._seconds(request, "timeout", self.config.long_poll_max)
        deadline = asyncio.get_running_loop().time() + timeout
        while self.head.height <= after and not self.failed.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next_block.wait(), remaining)
        return _answer(head_to_wire(self.head))

    async def _chain(self, request: web.Request) -> web.Response:
        chain = self._ledger().chain
        info = ChainDescription(chain.chain_id, chain.genesis.encode(),
                                chain.config.block_time, self.head.height)
        return _answer(chain_to_wire(info))

    async def _health(self, request: web.Request) -> web.Response:
        ok = self._embedded is not None and not self.failed.is_set()
        head = self.head
        return web.json_response(
            {"status": "ok" if ok else "stopped", "height": head.height,
             "head": head.hash.hex(), "chain_id": head.chain_id.hex(),
             "block_time": self.block_time if self._embedded is not None else None},
            status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    def _seconds(self, request: web.Request, name: str, default: float) -> float:
        """A duration parameter: a finite number ≥ 0, shortened to ``long_poll_max``."""
        text = request.query.get(name)
        if text is None:
            return min(default, self.config.long_poll_max)
        try:
            value = float(text)
        except ValueError:
            raise _ApiError(400, "bad_param", f"{name} must be a number of seconds") from None
        if not (math.isfinite(value) and value >= 0):
            raise _ApiError(400, "bad_param", f"{name} must be a finite number >= 0")
        return min(value, self.config.long_poll_max)


# --- helpers --------------------------------------------------------------------------------


async def _found(query: Awaitable[Any]) -> Any:
    try:
        return await query
    except NoSuchItemError as exc:
        raise _ApiError(404, "not_found", str(exc)) from None


def _integer(text: str, name: str, high: int) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > high:
        raise _ApiError(400, "bad_param", f"{name} must be a decimal integer in [0, {high}]")
    return int(text)


def _address(text: str) -> str:
    try:
        decode_address(text)
    except AddressError as exc:
        raise _ApiError(400, "bad_address", f"malformed address: {exc}") from None
    return text


def _netuid(text: str) -> int:
    return _integer(text, "netuid", U16_MAX)


def _uid(text: str) -> int:
    return _integer(text, "uid", U16_MAX)


def _answer(value: dict[str, Any], *, status: int = 200) -> web.Response:
    return web.Response(body=pack_answer(value), status=status, content_type=MSGPACK)


def _error_response(error: WireError) -> web.Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = retry_after_header(error.retry_after)
    return web.Response(body=ErrorBody.from_error(error).encode(), status=error.status,
                        content_type=MSGPACK, headers=headers)


_AIOHTTP_CODES = {404: "unknown_route", 405: "method_not_allowed", 413: "too_large"}


def _http_exception(exc: web.HTTPException) -> _ApiError:
    status = exc.status if 400 <= exc.status < 600 else 400
    return _ApiError(status, _AIOHTTP_CODES.get(status, "bad_request"), exc.reason)
