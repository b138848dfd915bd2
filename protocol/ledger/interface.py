"""The async ``Ledger`` interface every ledger client implements, and the embedded one.

:class:`Ledger` is what validators, miners, the router and the CLI program against. Two
implementations are planned: :class:`EmbeddedLedger` (this module, wrapping an in-process
:class:`Chain`) and a remote HTTP client (built on the chain node service). Both return the
same frozen view types and raise the same errors:

* :class:`TxRejected` from ``submit`` (stable ``reason`` codes, docs/spec-ledger.md §6);
* :class:`NoSuchItemError` for an unknown subnet or neuron;
* :class:`WaitTimeout` when a wait runs out;
* :class:`protocol.errors.AddressError` for a malformed address argument.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from protocol.ledger.chain import BlockResult, Chain, TxReceipt
from protocol.ledger.errors import WaitTimeout
from protocol.ledger.machine import TxOutcome
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.tx import Tx
from protocol.ledger.views import AccountInfo, NeuronInfo, SubnetInfo

__all__ = ["EmbeddedLedger", "Ledger", "submit_and_wait"]


@runtime_checkable
class Ledger(Protocol):
    """What a ledger client can do. Every method is a coroutine; none blocks the loop."""

    async def chain_id(self) -> bytes:
        """The 32-byte chain id transactions must carry (see ``TxBuilder``)."""
        ...

    async def submit(self, tx: Tx) -> TxReceipt:
        """Queue a signed transaction for the next block; raises ``TxRejected`` at once for
        malformed, wrong-chain, badly signed, out-of-sequence transactions or a full mempool."""
        ...

    async def wait_for_tx(self, tx_hash: bytes, timeout: float) -> TxOutcome:
        """Wait until the transaction's block is committed; return its final outcome
        (``applied`` with events, or the rejection ``reason``). Raises ``WaitTimeout``."""
        ...

    async def account(self, address: str) -> AccountInfo:
        """Balance, sequence numbers (``next_nonce`` for new submissions) and stake."""
        ...

    async def subnet(self, netuid: int) -> SubnetInfo:
        """One subnet; raises ``NoSuchItemError``."""
        ...

    async def subnets(self) -> tuple[SubnetInfo, ...]:
        """Every subnet, by netuid."""
        ...

    async def neuron(self, netuid: int, who: int | str) -> NeuronInfo:
        """The neuron at uid ``who`` (int) or held by hotkey address ``who`` (str)."""
        ...

    async def metagraph(self, netuid: int) -> Metagraph:
        """A frozen numpy snapshot of one subnet at the current block."""
        ...

    async def block_height(self) -> int:
        """Height of the last committed block."""
        ...

    async def wait_for_block(self, height: int, timeout: float) -> int:
        """Wait until a block at ``height`` or later is committed; return the height reached.
        Raises ``WaitTimeout``."""
        ...

    async def aclose(self) -> None:
        """Release the client's resources. Idempotent."""
        ...


async def submit_and_wait(ledger: Ledger, tx: Tx, timeout: float) -> TxOutcome:
    """Submit ``tx`` and wait for its final outcome (raises ``TxRejected`` or ``WaitTimeout``)."""
    receipt = await ledger.submit(tx)
    return await ledger.wait_for_tx(receipt.tx_hash, timeout)


class EmbeddedLedger:
    """:class:`Ledger` over an in-process :class:`Chain`.

    Calls are serialised by one lock; block production (SQLite fsync) runs in a worker thread
    so the event loop never blocks on disk. Whoever owns the node calls :meth:`produce_block`
    on its timer (every ``chain.config.block_time`` seconds).
    """

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self._lock = asyncio.Lock()
        self._new_block = asyncio.Condition()
        self._height = chain.height

    @property
    def chain(self) -> Chain:
        """The wrapped engine (use it only while no coroutine of this ledger runs)."""
        return self._chain

    async def produce_block(self, now_ms: int) -> BlockResult:
        """Produce and commit the next block (see :meth:`Chain.produce_block`); wake waiters."""
        async with self._lock:
            result = await asyncio.to_thread(self._chain.produce_block, now_ms)
            self._height = self._chain.height
        async with self._new_block:
            self._new_block.notify_all()
        return result

    async def chain_id(self) -> bytes:
        return self._chain.chain_id

    async def submit(self, tx: Tx) -> TxReceipt:
        async with self._lock:
            return self._chain.submit(tx)

    async def wait_for_tx(self, tx_hash: bytes, timeout: float) -> TxOutcome:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self._lock:
                outcome = self._chain.outcome(tx_hash)
                height = self._chain.height
            if outcome is not None:
                return outcome
            await self._wait_past(height, deadline)

    async def account(self, address: str) -> AccountInfo:
        async with self._lock:
            return self._chain.account(address)

    async def subnet(self, netuid: int) -> SubnetInfo:
        async with self._lock:
            return self._chain.subnet(netuid)

    async def subnets(self) -> tuple[SubnetInfo, ...]:
        async with self._lock:
            return self._chain.subnets()

    async def neuron(self, netuid: int, who: int | str) -> NeuronInfo:
        async with self._lock:
            return self._chain.neuron(netuid, who)

    async def metagraph(self, netuid: int) -> Metagraph:
        async with self._lock:
            return self._chain.metagraph(netuid)

    async def block_height(self) -> int:
        return self._height

    async def wait_for_block(self, height: int, timeout: float) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._height < height:
            await self._wait_past(self._height, deadline)
        return self._height

    async def _wait_past(self, height: int, deadline: float) -> None:
        """Wait until a block above ``height`` is committed, or raise at ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        async with self._new_block:
            try:
                await asyncio.wait_for(
                    self._new_block.wait_for(lambda: self._height > height), max(remaining, 0))
            except asyncio.TimeoutError:
                raise WaitTimeout(f"no block above {height} within the timeout") from None

    async def aclose(self) -> None:
        async with self._lock:
            self._chain.close()
