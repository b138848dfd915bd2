"""Per-request routing: rank the usable miners and return an ordered plan of attempts.

Scores put correctness first. A miner's *standing* is its validator-observed quality blended
with its relative incentive, cut by its recent wrong-answer rate (squared) and error rate; live
latency can move the score by at most ``latency_weight`` (5 %), less than one recorded wrong
answer costs (36 % with the defaults), so a fast wrong miner never outranks a slower right one.

Three strategies:

* ``best``: the *top tier* is every miner scoring within ``tier_tolerance`` of the best; among
  it, power-of-two-choices picks two at random and keeps the one with the lower TTFT EWMA, which
  spreads load over equals instead of herding onto one. Failover follows score order.
* ``weighted``: the primary is sampled with probability proportional to incentive (the
  consensus's own traffic split). Failover follows score order.
* ``ensemble``: ``k`` distinct miners sampled, proportionally to score, from the best
  ``ceil(k * ensemble_spread)``; failover (replacements) follows score order.

Ejected miners (:meth:`CircuitBreaker.blocked`), miners that do not meet the request's
requirements and hotkeys the caller excludes never appear in a plan. A decision at 200 miners
is a handful of numpy operations over the pool's arrays (see bench/bench_router_decision.py).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from protocol.errors import ConfigError
from router.breaker import CircuitBreaker
from router.candidates import ANY, Candidate, CandidatePool, Requirements
from router.errors import RouterInputError
from router.health import HealthTracker


class Strategy(str, enum.Enum):
    """How one request picks its miners."""

    BEST = "best"
    WEIGHTED = "weighted"
    ENSEMBLE = "ensemble"


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    """Score weights and plan sizes."""

    # Validators' quality is a direct measurement; incentive is consensus, lagging by epochs.
    quality_weight: float = 0.7
    # Assumed quality of a miner validators have not measured yet: neither trusted nor shunned.
    unknown_quality: float = 0.5
    # Squared: a miner wrong a fifth of the time keeps 64 % of its standing, not 80 %.
    wrong_exponent: float = 2.0
    error_exponent: float = 1.0
    # Latency moves a score by at most 5 %: below the cost of one wrong answer (see module doc).
    latency_weight: float = 0.05
    # TTFT at which half the latency weight is lost.
    latency_scale_s: float = 1.0
    # Within 3 % of the best counts as equal: P2C then balances by latency among them.
    tier_tolerance: float = 0.03
    # Two failovers: at most three attempts per request (gateways were seen making twelve).
    max_failover: int = 2
    ensemble_k: int = 3
    # Ensemble members come from the best 2k: quality stays high, load still spreads.
    ensemble_spread: float = 2.0

    def __post_init__(self) -> None:
        unit = ("quality_weight", "unknown_quality", "latency_weight", "tier_tolerance")
        for name in unit:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]")
        if self.wrong_exponent < 0 or self.error_exponent < 0 or self.latency_scale_s <= 0:
            raise ConfigError("exponents must be >= 0 and latency_scale_s > 0")
        if self.max_failover < 0 or self.ensemble_k < 1 or self.ensemble_spread < 1:
            raise ConfigError("need max_failover >= 0, ensemble_k >= 1, ensemble_spread >= 1")


@dataclass(frozen=True, slots=True)
class Plan:
    """The miners to try for one request, in order.

    Attributes:
        strategy: the strategy that made the plan.
        primary: the first attempt(s): one miner, or ``k`` distinct ones for ``ensemble``.
        failover: replacements, best first, disjoint from ``primary``; at most ``max_failover``.
        scores: routing score of each miner of ``attempts`` (same order).
        vote_weights: each miner's standing without latency or errors, in [0, 1] (same order),
            the weight of its ballot in :class:`router.vote.VoteTally`.

    An empty plan means no miner is usable for this request now.
    """

    strategy: Strategy
    primary: tuple[Candidate, ...]
    failover: tuple[Candidate, ...]
    scores: tuple[float, ...]
    vote_weights: tuple[float, ...]

    @property
    def attempts(self) -> tuple[Candidate, ...]:
        """``primary`` then ``failover``."""
        return self.primary + self.failover

    def __bool__(self) -> bool:
        return bool(self.primary)


def standing(pool: CandidatePool, config: StrategyConfig) -> np.ndarray:
    """Each pool member's consensus standing in [0, 1]: quality blended with relative incentive."""
    quality = np.where(np.isnan(pool.quality), config.unknown_quality, pool.quality)
    return config.quality_weight * quality + (1.0 - config.quality_weight) * pool.incentive_rel


def score(standing: np.ndarray, ttft_s: np.ndarray, error: np.ndarray, wrong: np.ndarray,
          config: StrategyConfig) -> np.ndarray:
    """Routing scores (higher is better) from standing and live signals (arrays aligned)."""
    latency = 1.0 - config.latency_weight * (ttft_s / (ttft_s + config.latency_scale_s))
    return (standing * (1.0 - wrong) ** config.wrong_exponent
            * (1.0 - error) ** config.error_exponent * latency)


class Planner:
    """Makes plans from a pool, the live health signals and the breaker's ejections.

    Holds the router's seeded ``rng``; deterministic for a given seed and call sequence.
    """

    def __init__(self, config: StrategyConfig, health: HealthTracker, breaker: CircuitBreaker,
                 rng: np.random.Generator) -> None:
        self.config = config
        self._health = health
        self._breaker = breaker
        self._rng = rng
        self._pool: CandidatePool | None = None
        self._generation = -1
        self._slots = np.empty(0, dtype=np.int64)
        self._standing = np.empty(0, dtype=np.float64)

    def rank(self, pool: CandidatePool, requirements: Requirements = ANY, *,
             exclude: Collection[str] = ()) -> tuple[Candidate, ...]:
        """Every usable candidate, best score first (ties keep pool order)."""
        positions, scores, _, _ = self._usable(pool, requirements, exclude)
        order = positions[np.argsort(-scores, kind="stable")]
        return tuple(pool.candidates[i] for i in order.tolist())

    def scores(self, pool: CandidatePool, requirements: Requirements = ANY, *,
               exclude: Collection[str] = ()) -> dict[str, float]:
        """Hotkey -> routing score of every usable candidate (for diagnostics and metrics)."""
        positions, scores, _, _ = self._usable(pool, requirements, exclude)
        return dict(zip((pool.hotkeys[i] for i in positions.tolist()), scores.tolist(),
                        strict=True))

    def plan(self, pool: CandidatePool, strategy: Strategy,
             requirements: Requirements = ANY, *, k: int | None = None,
             exclude: Collection[str] = ()) -> Plan:
        """An ordered plan for one request.

        Args:
            pool: the current snapshot of eligible miners.
            strategy: ``best``, ``weighted`` or ``ensemble``.
            requirements: what the request needs (capabilities, context, model).
            k: ensemble size (default ``ensemble_k``); fewer if fewer are usable.
            exclude: hotkeys to leave out (e.g. already tried when re-planning mid-request).

        Returns:
            A :class:`Plan`; empty when nothing is usable. Never contains a blocked,
            ineligible, unfit or excluded miner, and never the same miner twice.

        Raises:
            RouterInputError: ``k`` < 1.
        """
        size = self.config.ensemble_k if k is None else k
        if size < 1:
            raise RouterInputError(f"ensemble size must be >= 1, got {size}")
        positions, scores, weights, ttft = self._usable(pool, requirements, exclude)
        if positions.size == 0:
            return Plan(strategy, (), (), (), ())
        # Indices below are into ``positions`` (the usable candidates), not into the pool.
        by_score = np.argsort(-scores, kind="stable")
        if strategy is Strategy.BEST:
            chosen = [self._two_choices(scores, ttft, by_score)]
        elif strategy is Strategy.WEIGHTED:
            chosen = [self._by_incentive(pool, positions, by_score)]
        else:
            chosen = self._sample_ensemble(scores, by_score, size)
        taken = set(chosen)
        spares = [j for j in by_score[:len(chosen) + self.config.max_failover].tolist()
                  if j not in taken][:self.config.max_failover]
        picks = chosen + spares
        candidates = [pool.candidates[i] for i in positions[picks].tolist()]
        return Plan(strategy, tuple(candidates[:len(chosen)]), tuple(candidates[len(chosen):]),
                    tuple(scores[picks].tolist()), tuple(weights[picks].tolist()))

    # --- internals ---------------------------------------------------------------------------

    def _usable(self, pool: CandidatePool, requirements: Requirements,
                exclude: Collection[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pool positions of the usable candidates, and their scores, vote weights and TTFTs."""
        if pool is not self._pool or self._health.generation != self._generation:
            self._slots = self._health.slots(pool.hotkeys)
            self._standing = standing(pool, self.config)
            self._pool, self._generation = pool, self._health.generation
        mask = pool.mask(requirements)
        blocked = self._breaker.blocked()
        if blocked or exclude:
            mask = mask.copy()
            for hotkey in (*blocked, *exclude):
                i = pool.index.get(hotkey)
                if i is not None:
                    mask[i] = False
        positions = np.flatnonzero(mask)
        slots = self._slots[positions]
        health, cfg = self._health, self.config
        base = self._standing[positions]
        ttft = health.ttft[slots]
        wrong = health.wrong[slots]
        scores = score(base, ttft, health.error[slots], wrong, cfg)
        weights = base * (1.0 - wrong) ** cfg.wrong_exponent
        return positions, scores, weights, ttft

    def _two_choices(self, scores: np.ndarray, ttft: np.ndarray, by_score: np.ndarray) -> int:
        """The P2C pick among the top tier: of two drawn at random, the lower TTFT EWMA.

        Ties go to the higher score.
        """
        ranked = scores[by_score]
        tier = int(np.count_nonzero(ranked >= ranked[0] * (1.0 - self.config.tier_tolerance)))
        if tier == 1:
            return int(by_score[0])
        a = int(self._rng.integers(tier))
        b = int(self._rng.integers(tier - 1))
        b += b >= a
        better, worse = int(by_score[min(a, b)]), int(by_score[max(a, b)])
        return worse if ttft[worse] < ttft[better] else better

    def _by_incentive(self, pool: CandidatePool, positions: np.ndarray,
                      by_score: np.ndarray) -> int:
        """One usable candidate sampled by incentive (the best score if none has any)."""
        cumulative = np.cumsum(pool.incentive[positions])
        total = float(cumulative[-1])
        if total <= 0.0:
            return int(by_score[0])
        drawn = int(np.searchsorted(cumulative, self._rng.random() * total, side="right"))
        if drawn == positions.size:
            # random() * total rounded up to total: take the last miner that has incentive.
            drawn = int(np.flatnonzero(pool.incentive[positions])[-1])
        return drawn

    def _sample_ensemble(self, scores: np.ndarray, by_score: np.ndarray, k: int) -> list[int]:
        """``k`` distinct usable candidates, best score first, sampled by score."""
        k = min(k, by_score.size)
        top = by_score[:min(by_score.size, max(k, math.ceil(k * self.config.ensemble_spread)))]
        if top.size == k:
            return [int(i) for i in top]
        # Efraimidis-Spirakis: the k largest u**(1/w) are a weighted sample without replacement.
        keys = np.log(1.0 - self._rng.random(top.size)) / np.maximum(scores[top], 1e-12)
        picked = np.sort(np.argpartition(-keys, k - 1)[:k])
        return [int(i) for i in top[picked]]
