"""Re-applying stored blocks with every check: used by ``verify`` and by a restarting chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.ledger.block import BlockHeader, tx_digest
from protocol.ledger.errors import CorruptChainError, DecodeError, TxRejected
from protocol.ledger.genesis import Genesis
from protocol.ledger.machine import execute_block
from protocol.ledger.state import LedgerState
from protocol.ledger.state_codec import state_digest
from protocol.ledger.store import BlockStore, StoredBlock
from protocol.ledger.tx import Tx, decode_tx

__all__ = ["Cursor", "load_genesis", "replay_block", "replay_log"]


def load_genesis(store: BlockStore) -> Genesis:
    """The genesis recorded in ``store``.

    Raises:
        CorruptChainError: height 0, the record is not a canonical genesis.
    """
    try:
        return Genesis.decode(store.genesis())
    except DecodeError as exc:
        raise CorruptChainError(0, f"genesis record: {exc}") from None


@dataclass(frozen=True, slots=True)
class Cursor:
    """What the next block must link to: the previous hash and the earliest allowed time."""

    prev_hash: bytes
    timestamp_ms: int

    @classmethod
    def at_genesis(cls, genesis: Genesis) -> Cursor:
        """Block 1 links to the chain id and may not predate the genesis time."""
        return cls(genesis.chain_id, genesis.timestamp_ms)

    @classmethod
    def after(cls, header: BlockHeader) -> Cursor:
        """The cursor following ``header``."""
        return cls(header.hash, header.timestamp_ms)


def replay_block(state: LedgerState, block: StoredBlock, cursor: Cursor) -> Cursor:
    """Check ``block`` against ``cursor`` and ``state``, apply it, and return the next cursor.

    Checks, in order: height, stored hash, link, timestamp, proposer authority and signature,
    transaction encoding, transactions digest, that every transaction applies, state digest.

    Raises:
        CorruptChainError: naming the block; ``state`` must then be discarded.
    """
    header = block.header
    height = state.height + 1
    _check_header(header, block, cursor, height, state.genesis)
    txs = _decode_txs(block, height)
    if tx_digest(hashlib.sha256(body).digest() for body in block.txs) != header.tx_digest:
        raise CorruptChainError(height, "transactions do not match the header's tx digest")
    try:
        execute_block(state, txs, height, strict=True)
    except TxRejected as exc:
        raise CorruptChainError(height, f"a stored transaction does not apply: {exc}") from None
    if state_digest(state) != header.state_digest:
        raise CorruptChainError(height, "state after the block does not match its state digest")
    return Cursor.after(header)


def replay_log(store: BlockStore, state: LedgerState,
               cursor: Cursor) -> Iterator[StoredBlock]:
    """Replay every stored block after ``state.height`` (linking to ``cursor``), yielding each.

    Raises:
        CorruptChainError: a block fails :func:`replay_block`, or the log has a gap before its
            tip (a block row is missing).
    """
    tip = store.tip_height()
    for block in store.blocks(state.height + 1, tip):
        cursor = replay_block(state, block, cursor)
        yield block
    if state.height != tip:
        raise CorruptChainError(state.height + 1, "block missing from the log")


def _check_header(header: BlockHeader, block: StoredBlock, cursor: Cursor, height: int,
                  genesis: Genesis) -> None:
    if header.height != height:
        raise CorruptChainError(height, f"stored with height {header.height}")
    if block.tx_count != len(block.txs):
        raise CorruptChainError(height, "stored tx_count differs from its transactions")
    if block.stored_hash != header.hash:
        raise CorruptChainError(height, "stored hash does not match the header")
    if header.prev_hash != cursor.prev_hash:
        raise CorruptChainError(height, "does not link to the previous block")
    if header.timestamp_ms < cursor.timestamp_ms:
        raise CorruptChainError(height, "timestamp goes backwards")
    if header.proposer not in genesis.authority_keys:
        raise CorruptChainError(height, "proposer is not a genesis authority")
    if not header.signature_valid(block.signature):
        raise CorruptChainError(height, "proposer signature does not verify")


def _decode_txs(block: StoredBlock, height: int) -> list[Tx]:
    try:
        return [decode_tx(body) for body in block.txs]
    except TxRejected as exc:
        raise CorruptChainError(height, f"a stored transaction does not decode: {exc}") from None
