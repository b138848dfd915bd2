"""Read-only query answers built from a :class:`LedgerState`: accounts, subnets, neurons.

Frozen values with addresses as text and money as integer units, so a remote client can return
the same types as the embedded chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.keys import decode_address, encode_address
from protocol.ledger.errors import NoSuchItemError
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.state import Endpoint, LedgerState, Neuron, Subnet
from protocol.ledger.units import U16_ONE

__all__ = ["AccountInfo", "NeuronInfo", "SubnetInfo", "account_info", "neuron_info",
           "next_epoch_block", "subnet_info"]


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """A key's money and sequence numbers.

    Attributes:
        nonce: the sequence number the next *included* transaction must carry.
        next_nonce: the one to use for a new submission (``nonce`` + transactions pending
            in the mempool); equal to ``nonce`` where no mempool is known.
        stakes: ``(hotkey, units)`` this key has staked, as a coldkey, sorted by hotkey.
        staked_on: total units staked on this key as a hotkey (by any coldkey).
        owner: the owning coldkey if this key is a registered hotkey.
    """

    address: str
    balance: int
    nonce: int
    next_nonce: int
    stakes: tuple[tuple[str, int], ...]
    staked_on: int
    owner: str | None


@dataclass(frozen=True, slots=True)
class SubnetInfo:
    """A subnet's configuration and bookkeeping at the queried block."""

    netuid: int
    owner: str
    created_at: int
    hyperparams: SubnetHyperparams
    burn: int
    neurons: int
    pending_emission: int
    epochs_run: int
    last_epoch_block: int
    next_epoch_block: int


@dataclass(frozen=True, slots=True)
class NeuronInfo:
    """One neuron: identity, stake, the last epoch's outputs (floats in [0, 1]), endpoint.

    ``weights`` and ``bonds`` are the stored sparse rows as ``(uid, u16 value)`` pairs.
    """

    netuid: int
    uid: int
    hotkey: str
    coldkey: str
    stake: int
    registered_at: int
    last_update: int
    validator_permit: bool
    active: bool
    incentive: float
    dividends: float
    trust: float
    consensus: float
    validator_trust: float
    emission: int
    endpoint: Endpoint | None
    weights: tuple[tuple[int, int], ...]
    bonds: tuple[tuple[int, int], ...]


def account_info(state: LedgerState, address: str, pending: int = 0) -> AccountInfo:
    """The account of ``address`` (all zero for a key the chain has never seen).

    Raises:
        protocol.errors.AddressError: ``address`` is malformed.
    """
    key = decode_address(address)
    owner = state.owners.get(key)
    stakes = sorted((encode_address(hot), per[key]) for hot, per in state.stakes.items()
                    if key in per)
    nonce = state.nonce(key)
    return AccountInfo(address=encode_address(key), balance=state.balance(key), nonce=nonce,
                       next_nonce=nonce + pending, stakes=tuple(stakes),
                       staked_on=state.hotkey_stake(key),
                       owner=None if owner is None else encode_address(owner))


def next_epoch_block(subnet: Subnet, height: int) -> int:
    """The first block after ``height`` at whose end ``subnet`` runs its epoch."""
    tempo = subnet.hyperparams.tempo
    return height + 1 + (-(height + 1 + subnet.netuid)) % tempo


def subnet_info(state: LedgerState, netuid: int) -> SubnetInfo:
    """Subnet ``netuid`` (raises :class:`NoSuchItemError` if it does not exist)."""
    subnet = _subnet(state, netuid)
    return SubnetInfo(netuid=netuid, owner=encode_address(subnet.owner),
                      created_at=subnet.created_at, hyperparams=subnet.hyperparams,
                      burn=subnet.burn, neurons=len(subnet.neurons),
                      pending_emission=subnet.pending_emission, epochs_run=subnet.epochs_run,
                      last_epoch_block=subnet.last_epoch_block,
                      next_epoch_block=next_epoch_block(subnet, state.height))


def neuron_info(state: LedgerState, netuid: int, who: int | str) -> NeuronInfo:
    """The neuron at uid ``who`` (an int) or held by hotkey address ``who`` (a str).

    Raises:
        NoSuchItemError: no such subnet, uid or registered hotkey.
        protocol.errors.AddressError: ``who`` is a malformed address.
    """
    subnet = _subnet(state, netuid)
    if isinstance(who, str):
        neuron = subnet.neuron_of(decode_address(who))
    else:
        neuron = subnet.neurons[who] if 0 <= who < len(subnet.neurons) else None
    if neuron is None:
        raise NoSuchItemError(f"no neuron {who!r} on subnet {netuid}")
    return _neuron_info(state, netuid, neuron)


def _neuron_info(state: LedgerState, netuid: int, n: Neuron) -> NeuronInfo:
    return NeuronInfo(
        netuid=netuid, uid=n.uid, hotkey=encode_address(n.hotkey),
        coldkey=encode_address(state.owners[n.hotkey]), stake=state.hotkey_stake(n.hotkey),
        registered_at=n.registered_at, last_update=n.last_update,
        validator_permit=n.validator_permit, active=n.active, incentive=n.incentive / U16_ONE,
        dividends=n.dividends / U16_ONE, trust=n.trust / U16_ONE,
        consensus=n.consensus / U16_ONE, validator_trust=n.validator_trust / U16_ONE,
        emission=n.emission, endpoint=n.endpoint, weights=tuple(sorted(n.weights.items())),
        bonds=tuple(sorted(n.bonds.items())))


def _subnet(state: LedgerState, netuid: int) -> Subnet:
    subnet = state.subnets.get(netuid)
    if subnet is None:
        raise NoSuchItemError(f"no subnet {netuid}")
    return subnet
