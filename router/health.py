"""Live per-miner signals, keyed by hotkey: latency, errors, wrong answers, a TTFT p95.

The router's own measurements of each miner, updated after every attempt and read by
:mod:`router.strategies` (ranking) and :mod:`router.hedging` (when to hedge). Values sit in
numpy arrays indexed by a *slot* per hotkey so a routing decision gathers all of them with one
fancy index instead of 200 dict lookups. Slots follow the hotkey, never the uid: a recycled uid
starts from the priors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from protocol.errors import ConfigError
from router.errors import RouterInputError


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Smoothing factors, priors and the TTFT sample window.

    An EWMA with factor ``a`` gives the newest observation weight ``a``; ``1/a`` observations
    is roughly its memory.
    """

    # About the last five answers: follows a miner that slows within seconds, while one
    # outlier moves the average by a fifth of its excess.
    ttft_alpha: float = 0.2
    total_alpha: float = 0.2
    # About the last ten attempts: one timeout costs a tenth of the error rate.
    error_alpha: float = 0.1
    # One disagreement with the ensemble's winner costs a fifth; a right answer heals it.
    wrong_alpha: float = 0.2
    # 64 recent TTFTs give a p95 from its 4th-highest sample: stable yet recent.
    samples: int = 64
    # Below eight samples a p95 is a guess; hedging falls back to its cold policy.
    min_quantile_samples: int = 8
    # What an unmeasured miner is assumed to take: typical for a small model on one GPU.
    prior_ttft_s: float = 1.0
    prior_total_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("ttft_alpha", "total_alpha", "error_alpha", "wrong_alpha"):
            alpha = getattr(self, name)
            if not 0.0 < alpha <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {alpha!r}")
        if self.samples < 1 or not 1 <= self.min_quantile_samples <= self.samples:
            raise ConfigError("need 1 <= min_quantile_samples <= samples")
        if not (self.prior_ttft_s >= 0 and self.prior_total_s >= 0):
            raise ConfigError("priors must be >= 0")


@dataclass(frozen=True, slots=True)
class MinerHealth:
    """A copy of one miner's signals (for logs, metrics and provenance)."""

    hotkey: str
    ttft_s: float
    total_s: float
    error_rate: float
    wrong_rate: float
    p95_ttft_s: float | None
    successes: int
    failures: int
    wrongs: int
    failures_by_kind: tuple[tuple[str, int], ...]


def _check_duration(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise RouterInputError(f"{name} must be a finite number >= 0, got {value!r}")


class HealthTracker:
    """Per-miner EWMAs of TTFT, total latency, failure rate and wrong-answer rate.

    Arrays ``ttft``, ``total``, ``error`` and ``wrong`` are indexed by :meth:`slot`; read them
    afresh each time (they are replaced when the tracker grows) and never write them.
    ``generation`` changes whenever an existing slot is given to another hotkey, so a caller
    that cached slots must resolve them again.
    """

    def __init__(self, config: HealthConfig = HealthConfig(), *, capacity: int = 256) -> None:
        self.config = config
        self.generation = 0
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self._kinds: dict[int, dict[str, int]] = {}
        self.ttft = self.total = self.error = self.wrong = np.empty(0, dtype=np.float64)
        self._successes = self._failures = self._wrongs = np.empty(0, dtype=np.int64)
        self._samples = np.empty((0, config.samples), dtype=np.float64)
        self._allocate(max(capacity, 1))

    # --- slots -------------------------------------------------------------------------------

    def _allocate(self, capacity: int) -> None:
        """Grow every per-slot array to ``capacity``; new slots hold the priors and are free."""
        cfg = self.config
        old = len(self.ttft)

        def grow(current: np.ndarray, fill: float) -> np.ndarray:
            array = np.full(capacity, fill, dtype=current.dtype)
            array[:old] = current
            return array

        self.ttft = grow(self.ttft, cfg.prior_ttft_s)
        self.total = grow(self.total, cfg.prior_total_s)
        self.error = grow(self.error, 0.0)
        self.wrong = grow(self.wrong, 0.0)
        self._successes = grow(self._successes, 0)
        self._failures = grow(self._failures, 0)
        self._wrongs = grow(self._wrongs, 0)
        samples = np.zeros((capacity, cfg.samples), dtype=np.float64)
        samples[:old] = self._samples
        self._samples = samples
        # Reversed so that pop() hands out the lowest slot first: slots follow arrival order.
        self._free.extend(reversed(range(old, capacity)))

    def slot(self, hotkey: str) -> int:
        """The slot of ``hotkey``, given one (at the priors) if it has none yet."""
        slot = self._slot_of.get(hotkey)
        if slot is None:
            if not self._free:
                self._allocate(2 * len(self.ttft))
            slot = self._free.pop()
            self._slot_of[hotkey] = slot
        return slot

    def slots(self, hotkeys: Sequence[str]) -> np.ndarray:
        """An int64 array of the slots of ``hotkeys``, in order (allocating as needed)."""
        return np.fromiter((self.slot(h) for h in hotkeys), dtype=np.int64, count=len(hotkeys))

    def retain(self, hotkeys: Iterable[str]) -> None:
        """Forget every miner not in ``hotkeys`` (those that left the metagraph).

        Their slots return to the priors and may be reused; ``generation`` changes if any was
        freed.
        """
        keep = set(hotkeys)
        gone = [h for h in self._slot_of if h not in keep]
        for hotkey in gone:
            self._reset(self._slot_of.pop(hotkey))
        if gone:
            self.generation += 1

    def _reset(self, slot: int) -> None:
        cfg = self.config
        self.ttft[slot] = cfg.prior_ttft_s
        self.total[slot] = cfg.prior_total_s
        self.error[slot] = self.wrong[slot] = 0.0
        self._successes[slot] = self._failures[slot] = self._wrongs[slot] = 0
        self._kinds.pop(slot, None)
        self._free.append(slot)

    # --- recording ---------------------------------------------------------------------------

    def record_success(self, hotkey: str, ttft_s: float, total_s: float) -> None:
        """A verified answer: first token after ``ttft_s``, complete after ``total_s`` seconds.

        The first measurement replaces the prior; later ones are averaged in.

        Raises:
            RouterInputError: a negative or non-finite duration.
        """
        _check_duration("ttft_s", ttft_s)
        _check_duration("total_s", total_s)
        cfg = self.config
        slot = self.slot(hotkey)
        n = int(self._successes[slot])
        if n == 0:
            self.ttft[slot], self.total[slot] = ttft_s, total_s
        else:
            self.ttft[slot] += cfg.ttft_alpha * (ttft_s - self.ttft[slot])
            self.total[slot] += cfg.total_alpha * (total_s - self.total[slot])
        self.error[slot] -= cfg.error_alpha * self.error[slot]
        self._samples[slot, n % cfg.samples] = ttft_s
        self._successes[slot] = n + 1

    def record_failure(self, hotkey: str, kind: str) -> None:
        """An attempt that gave no verified answer; ``kind`` is ``QueryError.kind`` (counted)."""
        slot = self.slot(hotkey)
        self.error[slot] += self.config.error_alpha * (1.0 - self.error[slot])
        self._failures[slot] += 1
        kinds = self._kinds.setdefault(slot, {})
        kinds[kind] = kinds.get(kind, 0) + 1

    def record_wrong(self, hotkey: str) -> None:
        """The miner's answer disagreed with the ensemble's winning answer."""
        slot = self.slot(hotkey)
        self.wrong[slot] += self.config.wrong_alpha * (1.0 - self.wrong[slot])
        self._wrongs[slot] += 1

    def record_right(self, hotkey: str) -> None:
        """The miner's answer agreed with the ensemble's winning answer."""
        slot = self.slot(hotkey)
        self.wrong[slot] -= self.config.wrong_alpha * self.wrong[slot]

    # --- reading -----------------------------------------------------------------------------

    def ttft_quantile(self, hotkey: str, q: float = 0.95) -> float | None:
        """The nearest-rank ``q`` quantile of the miner's recent TTFTs.

        Returns ``None`` with fewer than ``min_quantile_samples`` samples (or an unknown miner).
        """
        slot = self._slot_of.get(hotkey)
        if slot is None:
            return None
        n = min(int(self._successes[slot]), self.config.samples)
        if n < self.config.min_quantile_samples:
            return None
        recent: list[float] = sorted(self._samples[slot, :n].tolist())
        return recent[max(math.ceil(q * n) - 1, 0)]

    def p95_ttft(self, hotkey: str) -> float | None:
        """:meth:`ttft_quantile` at 0.95: the hedging trigger."""
        return self.ttft_quantile(hotkey, 0.95)

    def snapshot(self, hotkey: str) -> MinerHealth:
        """A copy of the miner's signals (the priors if it was never recorded)."""
        slot = self._slot_of.get(hotkey)
        if slot is None:
            cfg = self.config
            return MinerHealth(hotkey, cfg.prior_ttft_s, cfg.prior_total_s, 0.0, 0.0, None,
                               0, 0, 0, ())
        return MinerHealth(
            hotkey=hotkey, ttft_s=float(self.ttft[slot]), total_s=float(self.total[slot]),
            error_rate=float(self.error[slot]), wrong_rate=float(self.wrong[slot]),
            p95_ttft_s=self.p95_ttft(hotkey), successes=int(self._successes[slot]),
            failures=int(self._failures[slot]), wrongs=int(self._wrongs[slot]),
            failures_by_kind=tuple(sorted(self._kinds.get(slot, {}).items())))
