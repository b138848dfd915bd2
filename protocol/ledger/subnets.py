"""Subnet lifecycle: creation (burning the lock cost) and owner hyperparameter changes."""

from __future__ import annotations

from protocol.keys import encode_address
from protocol.ledger.accounts import require_balance
from protocol.ledger.calls import CreateSubnet, SetHyperparams
from protocol.ledger.errors import HyperparamError, Reason, TxRejected
from protocol.ledger.events import Event, HyperparamsSet, SubnetCreated
from protocol.ledger.hyperparams import SubnetHyperparams, spec_of
from protocol.ledger.state import LedgerState, Subnet

__all__ = ["apply_create_subnet", "apply_set_hyperparams", "require_subnet"]

#: netuid 0 is reserved (the reference chain's root network); subnets count from 1.
FIRST_NETUID = 1


def require_subnet(state: LedgerState, netuid: int) -> Subnet:
    """Return subnet ``netuid`` or raise ``unknown_subnet``."""
    subnet = state.subnets.get(netuid)
    if subnet is None:
        raise TxRejected(Reason.UNKNOWN_SUBNET, f"no subnet {netuid}")
    return subnet


def apply_create_subnet(state: LedgerState, signer: bytes, call: CreateSubnet,
                        height: int) -> list[Event]:
    """Create the subnet with the smallest free netuid >= 1, owned by the signer."""
    params = state.genesis.params
    if len(state.subnets) >= params.max_subnets:
        raise TxRejected(Reason.TOO_MANY_SUBNETS, f"the chain allows {params.max_subnets}")
    lock = params.subnet_lock_cost
    if lock > call.max_lock_cost:
        raise TxRejected(Reason.LOCK_TOO_HIGH, f"the lock cost is {lock} units")
    require_balance(state, signer, lock)
    netuid = next(n for n in range(FIRST_NETUID, FIRST_NETUID + len(state.subnets) + 1)
                  if n not in state.subnets)
    state.account_for_update(signer).balance -= lock
    state.burned += lock
    hyper = params.default_hyperparams
    state.subnets[netuid] = Subnet(netuid=netuid, owner=signer, created_at=height,
                                   hyperparams=hyper, burn=hyper.min_burn)
    return [SubnetCreated(netuid, encode_address(signer), lock)]


def apply_set_hyperparams(state: LedgerState, signer: bytes, call: SetHyperparams,
                          height: int) -> list[Event]:
    """Apply owner-settable changes; the current burn is clamped into the new bounds."""
    subnet = require_subnet(state, call.netuid)
    if subnet.owner != signer:
        raise TxRejected(Reason.NOT_PERMITTED, "only the subnet owner sets hyperparameters")
    new = _changed(subnet.hyperparams, call)
    if new.max_allowed_uids < len(subnet.neurons):
        raise TxRejected(Reason.INVALID_HYPERPARAMS,
                         f"max_allowed_uids below the {len(subnet.neurons)} registered neurons")
    subnet.hyperparams = new
    subnet.burn = min(max(subnet.burn, new.min_burn), new.max_burn)
    return [HyperparamsSet(call.netuid, tuple(name for name, _ in call.changes))]


def _changed(current: SubnetHyperparams, call: SetHyperparams) -> SubnetHyperparams:
    try:
        for name, _ in call.changes:
            if not spec_of(name).owner_settable:
                raise TxRejected(Reason.NOT_PERMITTED, f"{name} is fixed by the network")
        return current.with_changes(dict(call.changes))
    except HyperparamError as exc:
        raise TxRejected(Reason.INVALID_HYPERPARAMS, str(exc)) from None
