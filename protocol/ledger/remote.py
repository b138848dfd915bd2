"""``RemoteLedger``: the :class:`Ledger` interface over a chain node's HTTP API.

It returns the same frozen view types as :class:`EmbeddedLedger` and raises the same errors,
rebuilt from the node's typed error bodies (docs/spec-ledger.md §17):

* ``TxRejected(reason)`` from ``submit`` (the body's ``code`` is the reason);
* ``NoSuchItemError`` for ``404 not_found``; ``AddressError`` for a malformed address (checked
  locally before any request, as the embedded ledger does);
* ``WaitTimeout`` when a wait runs out (long-polls repeat until the caller's timeout);
* ``ChainClosedError`` when the node reports its chain stopped.

Anything outside that contract — the node unreachable, a timeout of a plain request, an
answer that is not the documented msgpack — raises :class:`NodeError` (or ``DecodeError`` for
a body that does not decode). One pooled :class:`aiohttp.ClientSession` serves every call; it
is created on first use (construction does no I/O) and closed by :meth:`RemoteLedger.aclose`
or ``async with``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from protocol.errorbody import ErrorBody
from protocol.errors import AddressError, ConfigError, WireError
from protocol.keys import decode_address
from protocol.ledger.api_wire import (
    ANSWER_LIMITS,
    ChainDescription,
    Head,
    account_from_wire,
    chain_from_wire,
    head_from_wire,
    neuron_from_wire,
    outcome_from_wire,
    receipt_from_wire,
    subnet_from_wire,
    subnets_from_wire,
    unpack_answer,
)
from protocol.ledger.chain import TxReceipt
from protocol.ledger.errors import (
    ChainClosedError,
    LedgerError,
    NodeError,
    NoSuchItemError,
    Reason,
    TxRejected,
    WaitTimeout,
)
from protocol.ledger.machine import TxOutcome
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.metagraph_wire import metagraph_from_wire
from protocol.ledger.tx import Tx
from protocol.ledger.views import AccountInfo, NeuronInfo, SubnetInfo
from protocol.ledger.wire import U16_MAX

__all__ = ["MSGPACK", "NodeError", "RemoteConfig", "RemoteLedger"]  # NodeError re-exported

MSGPACK = "application/msgpack"
T = TypeVar("T")
_REASONS = frozenset(r.value for r in Reason)


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """How a :class:`RemoteLedger` talks to its node.

    Attributes:
        connect_timeout: seconds to open a TCP connection.
        request_timeout: seconds a plain (not long-poll) request may take in total.
        long_poll: seconds one long-poll request asks the node to hold (the node caps it at
            its own maximum, 30 s by default); waits longer than this repeat the request.
        pool_size: most simultaneous connections to the node.
    """

    connect_timeout: float = 5.0
    request_timeout: float = 30.0
    long_poll: float = 25.0
    pool_size: int = 16

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "request_timeout", "long_poll"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"RemoteConfig.{name} must be positive")
        if self.pool_size < 1:
            raise ConfigError("RemoteConfig.pool_size must be at least 1")


class RemoteLedger:
    """:class:`Ledger` over HTTP. ``async with RemoteLedger(url) as ledger: ...``."""

    def __init__(self, url: str, config: RemoteConfig | None = None) -> None:
        """Name the node at ``url`` (``http(s)://host:port``, no I/O).

        Raises:
            ConfigError: ``url`` is not an http(s) URL.
        """
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"a chain node URL starts with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.config = config or RemoteConfig()
        self._session: aiohttp.ClientSession | None = None
        self._chain_id: bytes | None = None
        self._closed = False

    async def __aenter__(self) -> RemoteLedger:
        self._http()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # --- the Ledger interface -------------------------------------------------------------------

    async def chain_id(self) -> bytes:
        """The node's chain id (fetched once, checked against its genesis, then cached)."""
        if self._chain_id is None:
            self._chain_id = (await self.chain_info()).chain_id
        return self._chain_id

    async def submit(self, tx: Tx) -> TxReceipt:
        """``POST /v1/tx``; raises :class:`TxRejected` with the node's reason."""
        try:
            body = tx.encode()
        except (TypeError, ValueError, OverflowError) as exc:
            raise TxRejected(Reason.MALFORMED, f"cannot encode the transaction: {exc}") from None
        status, data = await self._call("POST", "/v1/tx", body=body)
        if status == 202:
            return unpack_answer(data, receipt_from_wire)
        raise _error(status, data, submitting=True)

    async def wait_for_tx(self, tx_hash: bytes, timeout: float) -> TxOutcome:
        """Long-poll ``GET /v1/tx/{hash}?wait=S`` until an outcome or ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            wait = self._poll_seconds(deadline)
            status, data = await self._call("GET", f"/v1/tx/{tx_hash.hex()}",
                                            params={"wait": f"{wait:.3f}"}, long_poll=wait)
            if status == 200:
                return unpack_answer(data, outcome_from_wire)
            error = _error(status, data)
            if not (isinstance(error, NodeError) and error.code == "tx_not_found"):
                raise error
            if self._poll_seconds(deadline) <= 0:
                raise WaitTimeout(f"no outcome for {tx_hash.hex()} within {timeout} s")

    async def account(self, address: str) -> AccountInfo:
        """``GET /v1/account/{address}`` (the address is checked locally first)."""
        decode_address(address)
        return await self._get(f"/v1/account/{address}", account_from_wire)

    async def subnet(self, netuid: int) -> SubnetInfo:
        """``GET /v1/subnet/{netuid}``; raises :class:`NoSuchItemError`."""
        return await self._get(f"/v1/subnet/{_netuid(netuid)}", subnet_from_wire)

    async def subnets(self) -> tuple[SubnetInfo, ...]:
        """``GET /v1/subnets``."""
        return await self._get("/v1/subnets", subnets_from_wire)

    async def neuron(self, netuid: int, who: int | str) -> NeuronInfo:
        """``GET /v1/neuron/{netuid}/{uid or hotkey address}``; raises :class:`NoSuchItemError`."""
        if isinstance(who, str):
            decode_address(who)
            key = who
        else:
            if not 0 <= who <= U16_MAX:
                raise NoSuchItemError(f"no neuron {who!r} on subnet {netuid}")
            key = str(who)
        return await self._get(f"/v1/neuron/{_netuid(netuid)}/{key}", neuron_from_wire)

    async def metagraph(self, netuid: int) -> Metagraph:
        """``GET /v1/metagraph/{netuid}``; raises :class:`NoSuchItemError`."""
        return await self._get(f"/v1/metagraph/{_netuid(netuid)}", metagraph_from_wire)

    async def block_height(self) -> int:
        """Height of the node's last committed block."""
        return (await self.head()).height

    async def wait_for_block(self, height: int, timeout: float) -> int:
        """Long-poll ``GET /v1/blocks/wait`` until ``height`` is reached or ``timeout`` passes."""
        deadline = asyncio.get_running_loop().time() + timeout
        head = await self.head()
        while head.height < height:
            wait = self._poll_seconds(deadline)
            if wait <= 0:
                raise WaitTimeout(f"no block {height} within {timeout} s (at {head.height})")
            head = await self._get("/v1/blocks/wait", head_from_wire,
                                   params={"after": str(head.height), "timeout": f"{wait:.3f}"},
                                   long_poll=wait)
        return head.height

    # --- beyond the interface ---------------------------------------------------------------------

    async def head(self) -> Head:
        """``GET /v1/blocks/head``: the last committed block's height and hash."""
        return await self._get("/v1/blocks/head", head_from_wire)

    async def chain_info(self) -> ChainDescription:
        """``GET /v1/chain``: the genesis bytes (checked against the chain id) and block time."""
        return await self._get("/v1/chain", chain_from_wire)

    # --- plumbing ---------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ChainClosedError("this RemoteLedger is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"Accept": MSGPACK},
                timeout=aiohttp.ClientTimeout(total=self.config.request_timeout,
                                              sock_connect=self.config.connect_timeout))
        return self._session

    def _poll_seconds(self, deadline: float) -> float:
        remaining = deadline - asyncio.get_running_loop().time()
        return max(0.0, min(remaining, self.config.long_poll))

    async def _get(self, path: str, reader: Callable[[Any], T], *,
                   params: dict[str, str] | None = None, long_poll: float = 0.0) -> T:
        status, data = await self._call("GET", path, params=params, long_poll=long_poll)
        if status != 200:
            raise _error(status, data)
        return unpack_answer(data, reader)

    async def _call(self, method: str, path: str, *, body: bytes | None = None,
                    params: dict[str, str] | None = None,
                    long_poll: float = 0.0) -> tuple[int, bytes]:
        """One request; returns the status and the body (at most the answer size cap)."""
        session = self._http()
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout + long_poll,
                                        sock_connect=self.config.connect_timeout)
        headers = {"Content-Type": MSGPACK} if body is not None else None
        try:
            async with session.request(method, self.url + path, data=body, params=params,
                                       headers=headers, timeout=timeout) as resp:
                return resp.status, await _read_capped(resp, ANSWER_LIMITS.max_body)
        except TimeoutError:
            raise NodeError(f"chain node {self.url} did not answer {method} {path} in time",
                            code="timeout") from None
        except aiohttp.ClientError as exc:
            raise NodeError(f"cannot reach chain node {self.url}: {exc}") from None


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, refusing one larger than ``cap`` bytes (a node cannot flood us)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise NodeError(f"answer larger than {cap} bytes", status=resp.status,
                            code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _netuid(netuid: int) -> int:
    if not 0 <= netuid <= U16_MAX:
        raise NoSuchItemError(f"no subnet {netuid}")
    return netuid


#: Error codes that stand for an error of the Ledger interface, outside submit.
_CODE_ERRORS: dict[str, Callable[[str], LedgerError | AddressError]] = {
    "not_found": NoSuchItemError,
    "bad_address": AddressError,
    "chain_stopped": ChainClosedError,
}


def _error(status: int, data: bytes, *, submitting: bool = False) -> LedgerError | AddressError:
    """The exception an error answer stands for (see the module docstring)."""
    try:
        body = ErrorBody.decode(data)
    except WireError:
        return NodeError(f"chain node answered HTTP {status} without an error body",
                         status=status, code=f"http_{status}")
    if submitting and (body.code in _REASONS or status == 413):
        reason = Reason(body.code) if body.code in _REASONS else Reason.MALFORMED
        return TxRejected(reason, body.message)
    known = _CODE_ERRORS.get(body.code)
    if known is not None:
        return known(body.message)
    return NodeError(f"chain node: {body.message} ({body.code}, HTTP {status})", status=status,
                     code=body.code, retry_after=body.retry_after)
