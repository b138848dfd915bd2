"""Weights: direct sets, commit-reveal, validation, and expiry of unrevealed commits.

Commit digest (docs/spec-ledger.md §13)::

    SHA-256(b"ensemblenet/commit/v1" || msgpack([hotkey(32), netuid, [uids], [weights], salt]))
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.keys import encode_address
from protocol.ledger.calls import CommitWeights, RevealWeights, SetWeights
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import (
    CommitExpired,
    Event,
    WeightsCommitted,
    WeightsRevealed,
    WeightsSet,
)
from protocol.ledger.state import Commit, LedgerState, Neuron, Subnet
from protocol.ledger.subnets import require_subnet
from protocol.ledger.units import U16_ONE
from protocol.ledger.wire import encode, tagged_hash

__all__ = [
    "COMMIT_TAG",
    "apply_commit_weights",
    "apply_reveal_weights",
    "apply_set_weights",
    "commit_digest",
    "expire_commits",
    "validate_weights",
]

COMMIT_TAG = b"ensemblenet/commit/v1"


def commit_digest(hotkey: bytes, netuid: int, uids: Sequence[int], weights: Sequence[int],
                  salt: bytes) -> bytes:
    """The 32-byte digest a ``commit_weights`` transaction carries for this exact row."""
    return tagged_hash(COMMIT_TAG, encode([hotkey, netuid, list(uids), list(weights), salt]))


def validate_weights(subnet: Subnet, uids: Sequence[int], weights: Sequence[int]) -> dict[int, int]:
    """Return the row as ``{uid: weight}`` without zeros, or raise ``invalid_weights``.

    Rules: equal lengths, no duplicate uid, every uid registered, at least
    ``min(min_allowed_weights, n)`` non-zero weights, and the largest weight at most
    ``max_weight_limit / 65535`` of the sum (checked in integers).
    """
    hyper, n = subnet.hyperparams, len(subnet.neurons)
    if len(uids) != len(weights):
        raise _invalid("uids and weights differ in length")
    if len(set(uids)) != len(uids):
        raise _invalid("a uid appears twice")
    if any(uid >= n for uid in uids):
        raise _invalid(f"uids must be below {n}")
    row = {uid: w for uid, w in zip(uids, weights, strict=True) if w}
    needed = min(hyper.min_allowed_weights, n)
    if len(row) < needed:
        raise _invalid(f"need at least {needed} non-zero weights")
    if row and max(row.values()) * U16_ONE > hyper.max_weight_limit * sum(row.values()):
        raise _invalid(f"a weight exceeds {hyper.max_weight_limit}/65535 of the total")
    return row


def _invalid(message: str) -> TxRejected:
    return TxRejected(Reason.INVALID_WEIGHTS, message)


def _validator(state: LedgerState, signer: bytes, netuid: int) -> tuple[Subnet, Neuron]:
    """The subnet and the signer's neuron, which must hold a validator permit."""
    subnet = require_subnet(state, netuid)
    neuron = subnet.neuron_of(signer)
    if neuron is None:
        raise TxRejected(Reason.UNKNOWN_HOTKEY, f"the hotkey holds no uid on {netuid}")
    if not neuron.validator_permit:
        raise TxRejected(Reason.NOT_PERMITTED, "setting weights needs a validator permit")
    return subnet, neuron


def _require_rate(subnet: Subnet, neuron: Neuron, height: int) -> None:
    wait = neuron.last_update + subnet.hyperparams.weights_rate_limit - height
    if wait > 0:
        raise TxRejected(Reason.RATE_LIMITED, f"weights may change again in {wait} blocks")


def apply_set_weights(state: LedgerState, signer: bytes, call: SetWeights,
                      height: int) -> list[Event]:
    """Replace the signer's weights row (only when commit-reveal is off)."""
    subnet, neuron = _validator(state, signer, call.netuid)
    if subnet.hyperparams.commit_reveal:
        raise TxRejected(Reason.COMMIT_REVEAL_REQUIRED, "this subnet takes commit/reveal")
    _require_rate(subnet, neuron, height)
    row = validate_weights(subnet, call.uids, call.weights)
    neuron.weights = row
    neuron.last_update = height
    return [WeightsSet(call.netuid, neuron.uid, encode_address(signer), len(row))]


def apply_commit_weights(state: LedgerState, signer: bytes, call: CommitWeights,
                         height: int) -> list[Event]:
    """Record a commit; it may be revealed in epoch ``epochs_run + reveal_period`` only."""
    subnet, neuron = _validator(state, signer, call.netuid)
    if not subnet.hyperparams.commit_reveal:
        raise TxRejected(Reason.COMMIT_REVEAL_DISABLED, "this subnet takes set_weights")
    if signer in subnet.commits:
        raise TxRejected(Reason.COMMIT_PENDING, "reveal or let the pending commit expire first")
    _require_rate(subnet, neuron, height)
    reveal_epoch = subnet.epochs_run + subnet.hyperparams.reveal_period
    subnet.commits[signer] = Commit(call.digest, height, reveal_epoch)
    return [WeightsCommitted(call.netuid, neuron.uid, encode_address(signer), reveal_epoch)]


def apply_reveal_weights(state: LedgerState, signer: bytes, call: RevealWeights,
                         height: int) -> list[Event]:
    """Store the committed row if it matches the digest and this is the reveal epoch.

    Entries on uids (re)registered at or after the commit block are dropped: they name a slot
    whose holder changed since the validator made up its mind.
    """
    subnet, neuron = _validator(state, signer, call.netuid)
    commit = subnet.commits.get(signer)
    if commit is None:
        raise TxRejected(Reason.BAD_REVEAL, "no pending commit")
    if subnet.epochs_run != commit.reveal_epoch:
        raise TxRejected(Reason.BAD_REVEAL, f"reveal in epoch {commit.reveal_epoch}, "
                         f"this is epoch {subnet.epochs_run}")
    if commit_digest(signer, call.netuid, call.uids, call.weights, call.salt) != commit.digest:
        raise TxRejected(Reason.BAD_REVEAL, "weights and salt do not match the commit")
    row = validate_weights(subnet, call.uids, call.weights)
    neuron.weights = {uid: w for uid, w in row.items()
                      if subnet.neurons[uid].registered_at < commit.block}
    neuron.last_update = height
    del subnet.commits[signer]
    return [WeightsRevealed(call.netuid, neuron.uid, encode_address(signer), len(neuron.weights))]


def expire_commits(subnet: Subnet) -> list[Event]:
    """Drop commits whose reveal epoch has passed (call right after an epoch ran)."""
    expired = sorted(hot for hot, c in subnet.commits.items()
                     if subnet.epochs_run > c.reveal_epoch)
    events: list[Event] = []
    for hot in expired:
        commit = subnet.commits.pop(hot)
        events.append(CommitExpired(subnet.netuid, encode_address(hot), commit.block))
    return events
