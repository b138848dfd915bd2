"""Who holds which uid now: the validator's read-only view of one subnet's neurons.

Scores and sampling follow an :class:`Identity` (hotkey and registration block), never a uid:
uids are recycled slots, and a new holder of a slot (or the same hotkey registered anew) must
not inherit what the previous holder earned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsInt

from validators.errors import MetagraphError

__all__ = ["Identity", "Metagraph"]


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """One registration: the miner's hotkey address and the block it registered at."""

    hotkey: str
    registered_at: int


class Metagraph:
    """Parallel arrays, one entry per uid: uid, hotkey address, registration block, serving.

    Accepts any iterables (lists, numpy arrays) and keeps immutable tuples. ``serving``
    (whether the uid published an endpoint) defaults to all true.

    Raises:
        MetagraphError: the arrays differ in length, a uid is negative, or a uid or hotkey
            appears twice.
    """

    __slots__ = ("_registered_at", "_serving", "_uid_of", "_uids")

    def __init__(self, uids: Iterable[SupportsInt], hotkeys: Iterable[str],
                 registered_at: Iterable[SupportsInt],
                 serving: Iterable[bool] | None = None) -> None:
        self._uids = tuple(int(u) for u in uids)
        keys = tuple(str(h) for h in hotkeys)
        self._registered_at = tuple(int(b) for b in registered_at)
        self._serving = (tuple(True for _ in self._uids) if serving is None
                         else tuple(bool(s) for s in serving))
        if not len(self._uids) == len(keys) == len(self._registered_at) == len(self._serving):
            raise MetagraphError("uids, hotkeys, registered_at and serving differ in length")
        if len(set(self._uids)) != len(self._uids) or any(u < 0 for u in self._uids):
            raise MetagraphError("uids must be distinct and non-negative")
        if len(set(keys)) != len(keys):
            raise MetagraphError("a hotkey holds two uids")
        self._uid_of = {Identity(h, b): u
                        for u, h, b in zip(self._uids, keys, self._registered_at, strict=True)}

    @property
    def uids(self) -> tuple[int, ...]:
        """The uids, in array order."""
        return self._uids

    @property
    def hotkeys(self) -> tuple[str, ...]:
        """The hotkey address holding each uid."""
        return tuple(i.hotkey for i in self._uid_of)

    @property
    def registered_at(self) -> tuple[int, ...]:
        """The block each uid's holder registered at."""
        return self._registered_at

    @property
    def serving(self) -> tuple[bool, ...]:
        """Whether each uid serves (published an endpoint)."""
        return self._serving

    def __len__(self) -> int:
        return len(self._uids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Metagraph):
            return NotImplemented
        return (self._uids, self.identities(), self._serving) == \
            (other._uids, other.identities(), other._serving)

    def __hash__(self) -> int:
        return hash((self._uids, self.identities(), self._serving))

    def __repr__(self) -> str:
        return f"Metagraph(<{len(self)} uids, {sum(self._serving)} serving>)"

    def identities(self) -> tuple[Identity, ...]:
        """The identity at each position, in array order."""
        return tuple(self._uid_of)

    def serving_identities(self) -> tuple[Identity, ...]:
        """The identities whose uid serves, in array order."""
        return tuple(i for i, s in zip(self._uid_of, self._serving, strict=True) if s)

    def serving_uids(self) -> tuple[int, ...]:
        """The uids that serve, in array order."""
        return tuple(u for u, s in zip(self._uids, self._serving, strict=True) if s)

    def uid_of(self, identity: Identity) -> int | None:
        """The uid ``identity`` holds now, or ``None`` if it no longer holds one."""
        return self._uid_of.get(identity)

    def current(self, identities: Iterable[Identity]) -> list[Identity]:
        """Those of ``identities`` that still hold a uid, in the given order."""
        return [i for i in identities if i in self._uid_of]
