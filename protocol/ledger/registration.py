"""uid slots: registration (burn), pruning of the weakest neuron, and the burn price adjustment.

A new holder of a slot inherits nothing from the previous one: its weights row and bonds row
are fresh, every other neuron's weight and bond *on* the slot is removed, and the old hotkey's
pending commit on the subnet is dropped. The epoch's outdated-weight mask
(``block_at_registration``) is a second line of defence for weights set in the same block.
"""

from __future__ import annotations

from protocol.keys import encode_address
from protocol.ledger.accounts import require_balance
from protocol.ledger.calls import Register
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import BurnAdjusted, Event, Pruned, Registered
from protocol.ledger.state import LedgerState, Neuron, Subnet
from protocol.ledger.subnets import require_subnet

__all__ = ["adjust_burn", "apply_register", "prune_candidate"]


def apply_register(state: LedgerState, signer: bytes, call: Register,
                   height: int) -> list[Event]:
    """Register a hotkey (its cosignature was checked with the transaction) into a slot."""
    subnet = require_subnet(state, call.netuid)
    owner = state.owners.get(call.hotkey)
    if owner is not None and owner != signer:
        raise TxRejected(Reason.NOT_PERMITTED, "the hotkey belongs to another coldkey")
    if call.hotkey in subnet.uid_of:
        raise TxRejected(Reason.ALREADY_REGISTERED, "the hotkey already holds a uid here")
    burn = subnet.burn
    if burn > call.max_burn:
        raise TxRejected(Reason.BURN_TOO_HIGH, f"registration costs {burn} units now")
    require_balance(state, signer, burn)
    uid = _free_slot(subnet, height)

    state.account_for_update(signer).balance -= burn
    state.burned += burn
    state.owners[call.hotkey] = signer
    subnet.registrations += 1
    events: list[Event] = []
    if uid < len(subnet.neurons):
        events.append(Pruned(subnet.netuid, uid, encode_address(subnet.neurons[uid].hotkey)))
        _vacate(subnet, uid)
    subnet.place(Neuron(uid=uid, hotkey=call.hotkey, registered_at=height, last_update=height))
    events.append(Registered(subnet.netuid, uid, encode_address(call.hotkey),
                             encode_address(signer), burn))
    return events


def _free_slot(subnet: Subnet, height: int) -> int:
    if len(subnet.neurons) < subnet.hyperparams.max_allowed_uids:
        return len(subnet.neurons)
    uid = prune_candidate(subnet, height)
    if uid is None:
        raise TxRejected(Reason.SUBNET_FULL, "every uid is still inside its immunity period")
    return uid


def prune_candidate(subnet: Subnet, height: int) -> int | None:
    """The uid a registration into a full subnet replaces, or ``None`` if all are immune.

    Lowest last-epoch emission among neurons past their immunity period
    (``height >= registered_at + immunity_period``); ties go to the lowest uid.
    """
    immunity = subnet.hyperparams.immunity_period
    candidates = [(n.emission, n.uid) for n in subnet.neurons
                  if height >= n.registered_at + immunity]
    return min(candidates)[1] if candidates else None


def _vacate(subnet: Subnet, uid: int) -> None:
    """Remove every trace of the slot's holder from the other neurons and the commits."""
    for neuron in subnet.neurons:
        neuron.weights.pop(uid, None)
        neuron.bonds.pop(uid, None)
    subnet.commits.pop(subnet.neurons[uid].hotkey, None)


def adjust_burn(subnet: Subnet, height: int) -> list[Event]:
    """Move the registration cost toward the target rate, every ``adjustment_interval`` blocks.

    ``new = burn * (registrations + target) // (2 * target)``, at least ``burn + 1`` when
    registrations exceeded the target (so a zero or tiny burn can still rise), clamped to
    ``[min_burn, max_burn]``; the interval's registration count then restarts at 0.
    """
    hyper = subnet.hyperparams
    age = height - subnet.created_at
    if age <= 0 or age % hyper.adjustment_interval:
        return []
    target, regs, old = hyper.target_registrations_per_interval, subnet.registrations, subnet.burn
    new = old * (regs + target) // (2 * target)
    if regs > target:
        new = max(new, old + 1)
    new = min(max(new, hyper.min_burn), hyper.max_burn)
    subnet.registrations = 0
    subnet.burn = new
    return [BurnAdjusted(subnet.netuid, old, new)] if new != old else []
