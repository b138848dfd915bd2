"""A frozen per-subnet snapshot of every neuron as numpy arrays (index = uid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocol.keys import encode_address
from protocol.ledger.errors import NoSuchItemError
from protocol.ledger.state import Endpoint, LedgerState
from protocol.ledger.units import U16_ONE

__all__ = ["Metagraph", "build_metagraph"]


@dataclass(frozen=True, slots=True, eq=False)
class Metagraph:
    """Subnet ``netuid`` as it stood after block ``block``. Arrays are read-only, length ``n``.

    ``stake`` and ``emission`` are integer units (int64); ``incentive``, ``dividends``,
    ``consensus``, ``trust`` and ``validator_trust`` are the last epoch's outputs as floats
    (the stored u16 value / 65535); ``last_update`` and ``registered_at`` are block heights.
    """

    netuid: int
    block: int
    uids: NDArray[np.int64]
    hotkeys: tuple[str, ...]
    coldkeys: tuple[str, ...]
    stake: NDArray[np.int64]
    incentive: NDArray[np.float64]
    dividends: NDArray[np.float64]
    consensus: NDArray[np.float64]
    trust: NDArray[np.float64]
    validator_trust: NDArray[np.float64]
    validator_permit: NDArray[np.bool_]
    emission: NDArray[np.int64]
    last_update: NDArray[np.int64]
    active: NDArray[np.bool_]
    registered_at: NDArray[np.int64]
    endpoints: tuple[Endpoint | None, ...]

    @property
    def n(self) -> int:
        """Number of neurons (uid slots in use)."""
        return len(self.hotkeys)


def _frozen(values: list[Any], dtype: type) -> NDArray[Any]:
    array: NDArray[Any] = np.array(values, dtype=dtype)
    array.setflags(write=False)
    return array


def build_metagraph(state: LedgerState, netuid: int) -> Metagraph:
    """Snapshot subnet ``netuid`` of ``state`` (raises :class:`NoSuchItemError`)."""
    subnet = state.subnets.get(netuid)
    if subnet is None:
        raise NoSuchItemError(f"no subnet {netuid}")
    ns = subnet.neurons

    def ratio(field: str) -> NDArray[np.float64]:
        return _frozen([getattr(n, field) / U16_ONE for n in ns], np.float64)

    return Metagraph(
        netuid=netuid, block=state.height,
        uids=_frozen([n.uid for n in ns], np.int64),
        hotkeys=tuple(encode_address(n.hotkey) for n in ns),
        coldkeys=tuple(encode_address(state.owners[n.hotkey]) for n in ns),
        stake=_frozen([state.hotkey_stake(n.hotkey) for n in ns], np.int64),
        incentive=ratio("incentive"), dividends=ratio("dividends"),
        consensus=ratio("consensus"), trust=ratio("trust"),
        validator_trust=ratio("validator_trust"),
        validator_permit=_frozen([n.validator_permit for n in ns], np.bool_),
        emission=_frozen([n.emission for n in ns], np.int64),
        last_update=_frozen([n.last_update for n in ns], np.int64),
        active=_frozen([n.active for n in ns], np.bool_),
        registered_at=_frozen([n.registered_at for n in ns], np.int64),
        endpoints=tuple(n.endpoint for n in ns),
    )
