"""Who may call a miner, from the subnet's metagraph (SPEC.md §4, step 1).

Registered hotkeys only: validators holding a permit are always admitted; other callers
(applications) need at least ``min_stake``. Priority is the caller's stake, so waiting work is
ordered by stake. The table is swapped atomically on every metagraph refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import ForbiddenError
from protocol.keys import decode_address
from protocol.ledger.metagraph import Metagraph


@dataclass(frozen=True, slots=True)
class _Entry:
    stake: float
    permit: bool


class MetagraphPolicy:
    """A :class:`miners.server.CallerPolicy` backed by the latest metagraph snapshot."""

    def __init__(self, min_stake: float = 0.0) -> None:
        self._min_stake = min_stake
        self._table: dict[bytes, _Entry] = {}
        self._block = -1

    @property
    def block(self) -> int:
        """Block of the snapshot in use (-1 before the first update)."""
        return self._block

    def update(self, hotkeys: tuple[str, ...], stake: list[float], permit: list[bool],
               block: int) -> None:
        """Replace the table with a new snapshot (called as blocks arrive)."""
        self._table = {decode_address(h): _Entry(float(s), bool(p))
                       for h, s, p in zip(hotkeys, stake, permit, strict=True)}
        self._block = block

    def admit(self, caller: bytes, netuid: int) -> float:
        """Return the caller's stake as priority, or raise ForbiddenError (403)."""
        entry = self._table.get(caller)
        if entry is None:
            raise ForbiddenError("caller hotkey is not registered on this subnet",
                                 code="unregistered")
        if not entry.permit and entry.stake < self._min_stake:
            raise ForbiddenError(f"caller stake {entry.stake:g} is below this miner's minimum "
                                 f"{self._min_stake:g} for non-validators", code="low_stake")
        return entry.stake

    def update_from(self, metagraph: Metagraph) -> None:
        """Replace the table from a ledger metagraph snapshot."""
        self.update(metagraph.hotkeys, [float(s) for s in metagraph.stake],
                    [bool(p) for p in metagraph.validator_permit], metagraph.block)
