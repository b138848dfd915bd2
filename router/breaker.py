"""Circuit breaking with escalating ejection, shared by every request of one router.

A miner is *closed* (normal), *open* (ejected until a time) or *half-open* (ejection over, one
probe allowed). ``failure_threshold`` consecutive failures eject it for
``base_ejection_s * 2**k`` seconds (capped), ``k`` being how many times it was ejected recently;
when that passes, exactly one probe request is admitted: success closes, failure ejects again
for twice as long. One breaker object per router, updated synchronously: an ejection applies to
the very next admission of any request (not seconds later, as with per-replica cooldowns).

Attempts are admitted with :meth:`CircuitBreaker.admit`, which returns a :class:`Permit`; the
attempt's outcome is reported with that permit. A permit issued before a state change is
*stale* and its outcome is ignored, so late answers from requests started before an ejection
neither re-eject nor close a miner.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.clock import Clock
from protocol.errors import ConfigError


class State(enum.Enum):
    """A miner's breaker state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Ejection thresholds and durations (seconds)."""

    # Three in a row: one failure is noise, three is a pattern, and a request has at most
    # three attempts (router.strategies), so one bad request cannot eject a miner alone
    # unless every attempt landed on it.
    failure_threshold: int = 3
    # 5 s, doubling to 5 min: a restarting miner is back within seconds; a dead one costs one
    # probe per 5 minutes once escalated.
    base_ejection_s: float = 5.0
    max_ejection_s: float = 300.0
    # A miner not ejected for 10 minutes starts again at the base duration.
    forget_after_s: float = 600.0
    # A probe that reports nothing within this (its request was lost) lets another probe go.
    probe_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError("failure_threshold must be >= 1")
        if not 0 < self.base_ejection_s <= self.max_ejection_s:
            raise ConfigError("need 0 < base_ejection_s <= max_ejection_s")
        if self.forget_after_s < 0 or self.probe_timeout_s <= 0:
            raise ConfigError("forget_after_s must be >= 0 and probe_timeout_s > 0")


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one attempt to ``hotkey``; report its outcome with it.

    ``probe`` is true for the single half-open probe.
    """

    hotkey: str
    probe: bool
    epoch: int


@dataclass(slots=True)
class _Miner:
    state: State = State.CLOSED
    failures: int = 0                 # consecutive, counted while closed
    ejections: int = 0                # k, the escalation level
    open_until: float = 0.0
    last_ejected_at: float = -math.inf
    probe_until: float | None = None  # half-open: when the probe out now expires; None: none out
    epoch: int = 0                    # bumped on every change that makes earlier permits stale


class CircuitBreaker:
    """The ejection state of every miner, for one router. Not thread-safe (one event loop)."""

    def __init__(self, config: BreakerConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._miners: dict[str, _Miner] = {}
        self._tripped: set[str] = set()   # miners not closed: the only ones blocked() visits

    # --- queries -----------------------------------------------------------------------------

    def state(self, hotkey: str) -> State:
        """The miner's state now (an ejection whose time is over reads as half-open)."""
        miner = self._miners.get(hotkey)
        if miner is None:
            return State.CLOSED
        self._refresh(miner, self._clock.monotonic())
        return miner.state

    def is_blocked(self, hotkey: str) -> bool:
        """Whether :meth:`admit` would refuse ``hotkey`` now (ejected, or its probe is out)."""
        miner = self._miners.get(hotkey)
        return miner is not None and self._blocks(miner, self._clock.monotonic())

    def blocked(self) -> frozenset[str]:
        """Every hotkey :meth:`admit` would refuse now. Costs O(miners not closed)."""
        now = self._clock.monotonic()
        return frozenset(h for h in self._tripped if self._blocks(self._miners[h], now))

    def ejection_remaining(self, hotkey: str) -> float:
        """Seconds until an open miner turns half-open; 0 if it is not open."""
        miner = self._miners.get(hotkey)
        if miner is None:
            return 0.0
        now = self._clock.monotonic()
        self._refresh(miner, now)
        return miner.open_until - now if miner.state is State.OPEN else 0.0

    def ejections(self, hotkey: str) -> int:
        """The miner's escalation level ``k`` (ejections not yet forgotten)."""
        miner = self._miners.get(hotkey)
        return 0 if miner is None else miner.ejections

    def retain(self, hotkeys: Iterable[str]) -> None:
        """Forget every miner not in ``hotkeys`` (those that left the metagraph)."""
        keep = set(hotkeys)
        for hotkey in [h for h in self._miners if h not in keep]:
            del self._miners[hotkey]
            self._tripped.discard(hotkey)

    # --- admission and outcomes --------------------------------------------------------------

    def admit(self, hotkey: str) -> Permit | None:
        """A permit to send one attempt to ``hotkey``, or ``None`` while it is blocked.

        Closed: always. Open: never. Half-open: one probe at a time (the probe is out until its
        outcome is reported, it is abandoned, or ``probe_timeout_s`` passes).
        """
        miner = self._miners.get(hotkey)
        if miner is None:
            return Permit(hotkey, probe=False, epoch=0)
        now = self._clock.monotonic()
        self._refresh(miner, now)
        if miner.state is State.CLOSED:
            return Permit(hotkey, probe=False, epoch=miner.epoch)
        if miner.state is State.OPEN or miner.probe_until is not None:
            return None
        miner.probe_until = now + self.config.probe_timeout_s
        return Permit(hotkey, probe=True, epoch=miner.epoch)

    def succeeded(self, permit: Permit) -> None:
        """The attempt gave a verified answer: reset the failure count, or close after a probe."""
        miner = self._current(permit)
        if miner is None:
            return
        if miner.state is State.CLOSED:
            miner.failures = 0
        elif permit.probe and miner.state is State.HALF_OPEN:
            miner.state, miner.failures, miner.probe_until = State.CLOSED, 0, None
            miner.epoch += 1
            self._tripped.discard(permit.hotkey)

    def failed(self, permit: Permit, *, retry_after_s: float | None = None) -> None:
        """The attempt failed. Ejects after ``failure_threshold`` in a row, or a failed probe.

        ``retry_after_s`` (a miner's 429/503 hint) ejects at once for that long (at most
        ``max_ejection_s``) without raising the escalation level.
        """
        miner = self._current(permit)
        if miner is None:
            miner = self._miners.setdefault(permit.hotkey, _Miner())
            if miner.epoch != permit.epoch:
                return
        now = self._clock.monotonic()
        if retry_after_s is not None and retry_after_s > 0:
            self._eject(permit.hotkey, miner, now,
                        min(retry_after_s, self.config.max_ejection_s), escalate=False)
        elif miner.state is State.CLOSED:
            miner.failures += 1
            if miner.failures >= self.config.failure_threshold:
                self._eject(permit.hotkey, miner, now, None, escalate=True)
        elif permit.probe and miner.state is State.HALF_OPEN:
            self._eject(permit.hotkey, miner, now, None, escalate=True)

    def abandoned(self, permit: Permit) -> None:
        """The attempt was cancelled (lost a hedge, client went away): no verdict.

        An abandoned probe lets the next request probe at once.
        """
        miner = self._current(permit)
        if miner is not None and permit.probe and miner.state is State.HALF_OPEN:
            miner.probe_until = None

    # --- transitions -------------------------------------------------------------------------

    def _current(self, permit: Permit) -> _Miner | None:
        """The miner's record if ``permit`` is not stale (refreshed to now), else ``None``."""
        miner = self._miners.get(permit.hotkey)
        if miner is None:
            return None
        self._refresh(miner, self._clock.monotonic())
        return miner if miner.epoch == permit.epoch else None

    def _refresh(self, miner: _Miner, now: float) -> None:
        if miner.state is State.OPEN and now >= miner.open_until:
            miner.state, miner.probe_until = State.HALF_OPEN, None
        elif (miner.state is State.HALF_OPEN and miner.probe_until is not None
              and now >= miner.probe_until):
            # The lost probe's late outcome must not decide for the next one.
            miner.probe_until = None
            miner.epoch += 1

    def _blocks(self, miner: _Miner, now: float) -> bool:
        self._refresh(miner, now)
        return miner.state is State.OPEN or (
            miner.state is State.HALF_OPEN and miner.probe_until is not None)

    def _eject(self, hotkey: str, miner: _Miner, now: float, seconds: float | None, *,
               escalate: bool) -> None:
        cfg = self.config
        if now - miner.last_ejected_at > cfg.forget_after_s:
            miner.ejections = 0
        if seconds is None:
            seconds = min(cfg.base_ejection_s * 2.0 ** miner.ejections, cfg.max_ejection_s)
        if escalate:
            # Capped where the doubling passes the maximum, so the count cannot overflow.
            limit = math.ceil(math.log2(cfg.max_ejection_s / cfg.base_ejection_s))
            miner.ejections = min(miner.ejections + 1, limit)
        until = now + seconds
        if miner.state is State.OPEN and miner.open_until > until:
            until = miner.open_until
        miner.state, miner.open_until, miner.last_ejected_at = State.OPEN, until, now
        miner.failures, miner.probe_until = 0, None
        miner.epoch += 1
        self._tripped.add(hotkey)
