"""The state machine: apply one transaction, or one block's body, to a :class:`LedgerState`.

A block at height ``h`` applies its transactions in order (each sees height ``h``), then runs
:func:`protocol.ledger.epoch.end_block`, then sets ``state.height = h``. Pure and deterministic:
the same state and inputs always give the same state and events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.ledger import accounts, registration, serving, subnets, weights
from protocol.ledger.calls import (
    Call,
    CommitWeights,
    CreateSubnet,
    Faucet,
    Register,
    RevealWeights,
    Serve,
    SetHyperparams,
    SetWeights,
    Stake,
    Transfer,
    Unstake,
)
from protocol.ledger.epoch import end_block
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import Event
from protocol.ledger.genesis import Genesis
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx, check_signatures

__all__ = ["BlockEffects", "TxOutcome", "apply_tx", "check_stateless", "execute_block"]

_Handler = Callable[[LedgerState, bytes, Any, int], list[Event]]
_HANDLERS: dict[type[Call], _Handler] = {
    Transfer: accounts.apply_transfer,
    Stake: accounts.apply_stake,
    Unstake: accounts.apply_unstake,
    Faucet: accounts.apply_faucet,
    CreateSubnet: subnets.apply_create_subnet,
    SetHyperparams: subnets.apply_set_hyperparams,
    Register: registration.apply_register,
    Serve: serving.apply_serve,
    SetWeights: weights.apply_set_weights,
    CommitWeights: weights.apply_commit_weights,
    RevealWeights: weights.apply_reveal_weights,
}


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """What became of one transaction: applied (``events``) or rejected (``reason``)."""

    tx_hash: bytes
    applied: bool
    events: tuple[Event, ...] = ()
    reason: Reason | None = None
    message: str = ""
    height: int | None = None


@dataclass(frozen=True, slots=True)
class BlockEffects:
    """The result of executing a block body: what each transaction did, and end-of-block events.

    ``included`` lists the transactions that applied, in order: only they go into the block.
    """

    outcomes: tuple[TxOutcome, ...]
    included: tuple[Tx, ...]
    block_events: tuple[Event, ...]


def check_stateless(tx: Tx, genesis: Genesis) -> None:
    """Checks that need no state: chain id, signatures, and the faucet's dev-only rule.

    Raises:
        TxRejected: ``bad_chain_id``, ``bad_signature`` or ``not_dev_chain``.
    """
    if tx.chain_id != genesis.chain_id:
        raise TxRejected(Reason.BAD_CHAIN_ID, "the transaction is for another chain")
    if isinstance(tx.call, Faucet) and not genesis.dev:
        raise TxRejected(Reason.NOT_DEV_CHAIN, "the faucet exists only on dev chains")
    check_signatures(tx)


def apply_tx(state: LedgerState, tx: Tx, height: int) -> list[Event]:
    """Apply ``tx`` as part of block ``height``; on success the signer's nonce advances.

    Raises:
        TxRejected: with its reason; the state is then exactly as before the call.
    """
    check_stateless(tx, state.genesis)
    expected = state.nonce(tx.signer)
    if tx.nonce != expected:
        raise TxRejected(Reason.BAD_SEQUENCE, f"expected sequence {expected}, got {tx.nonce}")
    events = _HANDLERS[type(tx.call)](state, tx.signer, tx.call, height)
    state.account_for_update(tx.signer).nonce += 1
    return events


def execute_block(state: LedgerState, txs: Sequence[Tx], height: int, *,
                  strict: bool) -> BlockEffects:
    """Apply a block body at ``height``: the transactions, then the end-of-block steps.

    With ``strict`` (replaying a stored block) the first rejected transaction raises; without
    it (producing a block) rejected transactions are reported and left out.

    Raises:
        TxRejected: only with ``strict``; the state is then partly updated and must be dropped.
    """
    outcomes: list[TxOutcome] = []
    included: list[Tx] = []
    for tx in txs:
        try:
            events = apply_tx(state, tx, height)
        except TxRejected as exc:
            if strict:
                raise
            outcomes.append(TxOutcome(tx.hash, False, reason=exc.reason, message=exc.message))
            continue
        included.append(tx)
        outcomes.append(TxOutcome(tx.hash, True, tuple(events), height=height))
    block_events = end_block(state, height)
    state.height = height
    return BlockEffects(tuple(outcomes), tuple(included), tuple(block_events))
