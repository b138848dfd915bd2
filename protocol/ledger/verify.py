"""``verify(db_path)``: replay a ledger database from genesis and check every block."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.ledger.errors import CorruptChainError
from protocol.ledger.replay import Cursor, load_genesis, replay_log
from protocol.ledger.state import LedgerState, genesis_state
from protocol.ledger.state_codec import encode_state, state_digest
from protocol.ledger.store import BlockStore

__all__ = ["VerifyReport", "verify"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """A clean verification: how far it went and what the final state is."""

    chain_id: bytes
    height: int
    tip_hash: bytes
    state_digest: bytes
    blocks: int
    transactions: int
    snapshots_checked: int


def verify(db_path: str | Path) -> VerifyReport:
    """Replay the whole block log from genesis, checking every block and every snapshot.

    Opens the database read-only. Checks each block's height, hash, link, timestamp,
    proposer signature, transaction encodings and signatures, transactions digest and state
    digest (see :func:`protocol.ledger.replay.replay_block`), and that every stored snapshot
    equals the replayed state at its height.

    Raises:
        CorruptChainError: naming the first bad block (0 for the genesis record).
        StoreError: the database cannot be opened or read.
    """
    store = BlockStore.open(db_path, readonly=True)
    try:
        genesis = load_genesis(store)
        snapshots = dict(store.snapshots())
        state = genesis_state(genesis)
        checked = _check_snapshot(snapshots, state)
        blocks = transactions = 0
        tip_hash = genesis.chain_id
        for block in replay_log(store, state, Cursor.at_genesis(genesis)):
            tip_hash = block.header.hash
            checked += _check_snapshot(snapshots, state)
            blocks += 1
            transactions += len(block.txs)
        if checked != len(snapshots):
            raise CorruptChainError(max(snapshots), "snapshot beyond the last block")
        return VerifyReport(genesis.chain_id, state.height, tip_hash, state_digest(state),
                            blocks, transactions, checked)
    finally:
        store.close()


def _check_snapshot(snapshots: dict[int, bytes], state: LedgerState) -> int:
    """1 if a snapshot at the state's height exists and equals it, 0 if none; else raise."""
    stored = snapshots.get(state.height)
    if stored is None:
        return 0
    if stored != encode_state(state):
        raise CorruptChainError(state.height, "stored snapshot differs from the replayed state")
    return 1
