"""A small driver for dev chains in tests and demos: named keys, automatic nonces, a fake clock.

Not used by the ledger itself. Keys come from ``SHA-256(name)`` so tests are reproducible.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from protocol.keys import Keypair
from protocol.ledger.builders import TxBuilder
from protocol.ledger.chain import BlockResult, Chain, ChainConfig, TxReceipt
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import Genesis, NetworkParams
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.machine import TxOutcome
from protocol.ledger.units import UNITS_PER_TOKEN

__all__ = ["ChainDriver", "named_key"]

#: A fixed, realistic start time (Unix ms) so block timestamps are reproducible.
START_MS = 1_790_000_000_000


def named_key(name: str) -> Keypair:
    """The deterministic test key called ``name``."""
    return Keypair(hashlib.sha256(name.encode()).digest())


class ChainDriver:
    """Drives a :class:`Chain`: signs with named keys, tracks nonces, ticks a fake clock."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.now_ms = START_MS

    @classmethod
    def open(cls, path: str | Path, *, funded: tuple[str, ...] = (),
             balance: int = 10_000 * UNITS_PER_TOKEN, hyperparams: SubnetHyperparams | None = None,
             subnet_lock_cost: int = UNITS_PER_TOKEN, snapshot_interval: int = 100) -> ChainDriver:
        """Open (or create) a dev chain whose authority is ``named_key("authority")``.

        ``funded`` names keys that start with ``balance`` units; new subnets start with
        ``hyperparams``.
        """
        authority = named_key("authority")
        params = NetworkParams(subnet_lock_cost=subnet_lock_cost,
                               default_hyperparams=hyperparams or SubnetHyperparams())
        genesis = Genesis.for_dev(authority.address,
                                  tuple((named_key(n).address, balance) for n in funded), params)
        config = ChainConfig(node_key=authority, genesis=genesis, dev=True,
                             snapshot_interval=snapshot_interval)
        return cls(Chain.open(path, config))

    def builder(self, name: str) -> TxBuilder:
        """A transaction builder for key ``name``."""
        return TxBuilder(named_key(name), self.chain.chain_id)

    def send(self, name: str, op: str, *args: Any, **kwargs: Any) -> TxReceipt:
        """Build ``TxBuilder.<op>(*args, **kwargs)`` signed by ``name`` (next nonce); submit it."""
        nonce = self.chain.account(named_key(name).address).next_nonce
        tx = getattr(self.builder(name), op)(*args, nonce=nonce, **kwargs)
        return self.chain.submit(tx)

    def block(self) -> BlockResult:
        """Produce one block, one block time after the previous one."""
        self.now_ms += round(self.chain.config.block_time * 1000)
        return self.chain.produce_block(self.now_ms)

    def blocks(self, count: int) -> list[BlockResult]:
        """Produce ``count`` blocks."""
        return [self.block() for _ in range(count)]

    def run_to(self, height: int) -> list[BlockResult]:
        """Produce blocks until the chain is at ``height``."""
        return self.blocks(max(0, height - self.chain.height))

    def apply(self, name: str, op: str, *args: Any, **kwargs: Any) -> TxOutcome:
        """:meth:`send`, then produce a block; return the transaction's outcome."""
        receipt = self.send(name, op, *args, **kwargs)
        self.block()
        outcome = self.chain.outcome(receipt.tx_hash)
        if outcome is None:
            raise LedgerError("a committed block gave no outcome for its transaction")
        return outcome
