"""Money movements: transfer, stake, unstake and the dev faucet.

Every function checks all its preconditions first and only then mutates, so a raised
:class:`TxRejected` leaves the state untouched.
"""

from __future__ import annotations

from protocol.keys import encode_address
from protocol.ledger.calls import Faucet, Stake, Transfer, Unstake
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import Event, FaucetPaid, Staked, Transferred, Unstaked
from protocol.ledger.state import LedgerState
from protocol.ledger.units import MAX_SUPPLY

__all__ = ["apply_faucet", "apply_stake", "apply_transfer", "apply_unstake", "require_balance"]


def require_balance(state: LedgerState, key: bytes, amount: int) -> None:
    """Raise ``insufficient_balance`` unless ``key`` holds at least ``amount`` units."""
    balance = state.balance(key)
    if balance < amount:
        raise TxRejected(Reason.INSUFFICIENT_BALANCE,
                         f"balance {balance} is below the {amount} units needed")


def apply_transfer(state: LedgerState, signer: bytes, call: Transfer, height: int) -> list[Event]:
    """Move units between two balances."""
    require_balance(state, signer, call.amount)
    state.account_for_update(signer).balance -= call.amount
    state.account_for_update(call.dest).balance += call.amount
    return [Transferred(encode_address(signer), encode_address(call.dest), call.amount)]


def apply_stake(state: LedgerState, signer: bytes, call: Stake, height: int) -> list[Event]:
    """Stake from the signer's balance onto a hotkey.

    The hotkey must have an owner (it registered once). A coldkey may stake on its own hotkey
    at any time, and on another coldkey's hotkey only while that hotkey holds a uid somewhere
    (delegation to an active neuron).
    """
    owner = state.owners.get(call.hotkey)
    if owner is None:
        raise TxRejected(Reason.UNKNOWN_HOTKEY, "the hotkey has never been registered")
    if owner != signer and not state.is_registered_anywhere(call.hotkey):
        raise TxRejected(Reason.NOT_PERMITTED,
                         "staking on another coldkey's hotkey needs it to be registered")
    require_balance(state, signer, call.amount)
    state.account_for_update(signer).balance -= call.amount
    state.add_stake(call.hotkey, signer, call.amount)
    return [Staked(encode_address(signer), encode_address(call.hotkey), call.amount)]


def apply_unstake(state: LedgerState, signer: bytes, call: Unstake, height: int) -> list[Event]:
    """Return stake the signer holds on a hotkey to its balance."""
    staked = state.stake_of(call.hotkey, signer)
    if staked < call.amount:
        raise TxRejected(Reason.INSUFFICIENT_STAKE,
                         f"stake {staked} is below the {call.amount} units requested")
    state.add_stake(call.hotkey, signer, -call.amount)
    state.account_for_update(signer).balance += call.amount
    return [Unstaked(encode_address(signer), encode_address(call.hotkey), call.amount)]


def apply_faucet(state: LedgerState, signer: bytes, call: Faucet, height: int) -> list[Event]:
    """Mint units to an address; only on dev chains, at most ``faucet_max`` per transaction."""
    if not state.genesis.dev:
        raise TxRejected(Reason.NOT_DEV_CHAIN, "the faucet exists only on dev chains")
    if call.amount > state.genesis.params.faucet_max:
        raise TxRejected(Reason.NOT_PERMITTED,
                         f"the faucet pays at most {state.genesis.params.faucet_max} units")
    if state.issuance + call.amount > MAX_SUPPLY:
        raise TxRejected(Reason.SUPPLY_CAP, "minting this would exceed the maximum supply")
    state.account_for_update(call.dest).balance += call.amount
    state.issuance += call.amount
    return [FaucetPaid(encode_address(call.dest), call.amount)]
