"""Typed events: what an applied transaction or an end-of-block step did.

Events are derived data: they are not part of the state digest and can be rebuilt by replaying
the block log. Keys appear as ``ens1...`` addresses, money as integer units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "BurnAdjusted",
    "CommitExpired",
    "EpochRun",
    "Event",
    "FaucetPaid",
    "HyperparamsSet",
    "Pruned",
    "Registered",
    "Served",
    "Staked",
    "SubnetCreated",
    "Transferred",
    "Unstaked",
    "WeightsCommitted",
    "WeightsRevealed",
    "WeightsSet",
]


class Event:
    """Base of every event; ``KIND`` is its stable name."""

    __slots__ = ()
    KIND: ClassVar[str]


@dataclass(frozen=True, slots=True)
class Transferred(Event):
    """``amount`` units moved from ``source`` to ``dest``."""

    KIND: ClassVar[str] = "transferred"
    source: str
    dest: str
    amount: int


@dataclass(frozen=True, slots=True)
class Staked(Event):
    """``coldkey`` moved ``amount`` units from its balance to its stake on ``hotkey``."""

    KIND: ClassVar[str] = "staked"
    coldkey: str
    hotkey: str
    amount: int


@dataclass(frozen=True, slots=True)
class Unstaked(Event):
    """``coldkey`` moved ``amount`` units of its stake on ``hotkey`` back to its balance."""

    KIND: ClassVar[str] = "unstaked"
    coldkey: str
    hotkey: str
    amount: int


@dataclass(frozen=True, slots=True)
class FaucetPaid(Event):
    """The dev faucet minted ``amount`` units to ``dest``."""

    KIND: ClassVar[str] = "faucet_paid"
    dest: str
    amount: int


@dataclass(frozen=True, slots=True)
class SubnetCreated(Event):
    """``owner`` created subnet ``netuid``, burning ``lock_cost`` units."""

    KIND: ClassVar[str] = "subnet_created"
    netuid: int
    owner: str
    lock_cost: int


@dataclass(frozen=True, slots=True)
class HyperparamsSet(Event):
    """The owner of ``netuid`` changed the hyperparameters ``names``."""

    KIND: ClassVar[str] = "hyperparams_set"
    netuid: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Registered(Event):
    """``hotkey`` (owned by ``coldkey``) took slot ``uid`` of ``netuid``, burning ``burn``."""

    KIND: ClassVar[str] = "registered"
    netuid: int
    uid: int
    hotkey: str
    coldkey: str
    burn: int


@dataclass(frozen=True, slots=True)
class Pruned(Event):
    """``hotkey`` lost slot ``uid`` of ``netuid`` to a new registration."""

    KIND: ClassVar[str] = "pruned"
    netuid: int
    uid: int
    hotkey: str


@dataclass(frozen=True, slots=True)
class Served(Event):
    """``hotkey`` (uid ``uid`` of ``netuid``) published its endpoint."""

    KIND: ClassVar[str] = "served"
    netuid: int
    uid: int
    hotkey: str
    host: str
    port: int
    protocol: int


@dataclass(frozen=True, slots=True)
class WeightsSet(Event):
    """uid ``uid`` of ``netuid`` stored a weights row with ``count`` non-zero entries."""

    KIND: ClassVar[str] = "weights_set"
    netuid: int
    uid: int
    hotkey: str
    count: int


@dataclass(frozen=True, slots=True)
class WeightsCommitted(Event):
    """uid ``uid`` committed to a weights row; it may reveal in epoch ``reveal_epoch``."""

    KIND: ClassVar[str] = "weights_committed"
    netuid: int
    uid: int
    hotkey: str
    reveal_epoch: int


@dataclass(frozen=True, slots=True)
class WeightsRevealed(Event):
    """uid ``uid`` revealed its committed row; ``count`` non-zero entries were stored."""

    KIND: ClassVar[str] = "weights_revealed"
    netuid: int
    uid: int
    hotkey: str
    count: int


@dataclass(frozen=True, slots=True)
class CommitExpired(Event):
    """A commit made at block ``commit_block`` was not revealed in time and was dropped."""

    KIND: ClassVar[str] = "commit_expired"
    netuid: int
    hotkey: str
    commit_block: int


@dataclass(frozen=True, slots=True)
class BurnAdjusted(Event):
    """The registration cost of ``netuid`` moved from ``old`` to ``new`` units."""

    KIND: ClassVar[str] = "burn_adjusted"
    netuid: int
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class EpochRun(Event):
    """Subnet ``netuid`` ran its epoch at ``block`` and paid its pending emission.

    ``emission`` = ``owner_paid + miners_paid + validators_paid + carried``: ``carried`` (the
    integer rounding remainder, or everything when nobody qualifies) stays pending for the
    next epoch.
    """

    KIND: ClassVar[str] = "epoch"
    netuid: int
    block: int
    epoch: int
    neurons: int
    emission: int
    owner_paid: int
    miners_paid: int
    validators_paid: int
    carried: int
