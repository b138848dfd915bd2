"""Routing strategies: scores, tiers with power-of-two-choices, weighted, ensemble, plans."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.clock import ManualClock
from protocol.errors import ConfigError
from router.breaker import BreakerConfig, CircuitBreaker
from router.candidates import (
    Candidate,
    CandidatePool,
    EligibilityConfig,
    Requirements,
    is_eligible,
    meets,
)
from router.errors import RouterInputError
from router.health import HealthTracker
from router.strategies import Plan, Planner, Strategy, StrategyConfig, score, standing

DEFAULT = StrategyConfig()


def miner(name: str, incentive: float = 0.5, quality: float | None = 0.9,
          capabilities: frozenset[str] = frozenset({"chat"}), context: int = 8192) -> Candidate:
    """A candidate named ``name`` (its hotkey)."""
    return Candidate(uid=0, hotkey=name, url=f"http://{name}", incentive=incentive,
                     quality=quality, capabilities=capabilities, context_length=context)


class Router:
    """The decision core's objects wired as the network layer will wire them."""

    def __init__(self, candidates: list[Candidate], seed: int = 7,
                 config: StrategyConfig = DEFAULT) -> None:
        self.clock = ManualClock()
        self.pool = CandidatePool(candidates)
        self.health = HealthTracker()
        self.breaker = CircuitBreaker(BreakerConfig(), self.clock)
        self.planner = Planner(config, self.health, self.breaker, np.random.default_rng(seed))

    def plan(self, strategy: Strategy = Strategy.BEST, **kwargs: object) -> Plan:
        return self.planner.plan(self.pool, strategy, **kwargs)  # type: ignore[arg-type]

    def eject(self, hotkey: str) -> None:
        for _ in range(3):
            permit = self.breaker.admit(hotkey)
            assert permit is not None
            self.breaker.failed(permit)


def names(candidates: tuple[Candidate, ...]) -> list[str]:
    """Hotkeys of ``candidates``, in order."""
    return [c.hotkey for c in candidates]


def test_standing_blends_quality_and_relative_incentive() -> None:
    """standing = 0.7 * quality (0.5 if unknown) + 0.3 * incentive / max incentive."""
    pool = CandidatePool([miner("a", 0.5, 0.9), miner("b", 0.25, None), miner("c", 0.0, 0.6)])
    assert standing(pool, StrategyConfig()).tolist() == pytest.approx([0.93, 0.5, 0.42])


def test_score_formula() -> None:
    """score = standing * (1 - wrong)^2 * (1 - error) * (1 - 0.05 * ttft / (ttft + 1))."""
    got = score(np.array([0.93, 1.0, 1.0]), np.array([1.0, 0.0, 3.0]),
                np.array([0.0, 0.5, 0.0]), np.array([0.0, 0.0, 0.2]), StrategyConfig())
    assert got.tolist() == pytest.approx([0.90675, 0.5, 0.64 * 0.9625])


def test_config_validation() -> None:
    """Weights are proportions; sizes positive."""
    with pytest.raises(ConfigError):
        StrategyConfig(latency_weight=1.5)
    with pytest.raises(ConfigError):
        StrategyConfig(ensemble_k=0)


def test_best_picks_top_tier_and_fails_over_by_score() -> None:
    """A lone top-tier miner is the primary; failover follows score order."""
    router = Router([miner("c", 0.2, 0.8), miner("b", 0.5, 0.6), miner("a", 0.5, 0.9)])
    plan = router.plan()
    assert names(plan.primary) == ["a"]
    assert names(plan.failover) == ["b", "c"]
    assert names(plan.attempts) == ["a", "b", "c"]
    assert plan.scores == pytest.approx((0.90675, 0.702, 0.663))
    assert plan.vote_weights == pytest.approx((0.93, 0.72, 0.68))


def test_failover_is_capped() -> None:
    """At most ``max_failover`` (2) replacements: three attempts per request at most."""
    router = Router([miner(f"m{i}", 0.1 + i / 100) for i in range(10)])
    plan = router.plan()
    assert (len(plan.primary), len(plan.failover)) == (1, 2)


def test_two_choices_prefers_lower_ttft_within_tier() -> None:
    """Of a top tier of two, the one with the lower TTFT EWMA is always chosen."""
    router = Router([miner("slow"), miner("fast")])
    router.health.record_success("slow", 2.0, 4.0)
    router.health.record_success("fast", 0.5, 4.0)
    assert {names(router.plan().primary)[0] for _ in range(50)} == {"fast"}


def test_two_choices_spreads_over_tier_but_never_picks_its_slowest() -> None:
    """In a tier of three, P2C uses the two faster ones and never the slowest."""
    router = Router([miner("a"), miner("b"), miner("c"), miner("weak", quality=0.3)])
    for name, ttft in (("a", 0.5), ("b", 1.0), ("c", 2.0)):
        router.health.record_success(name, ttft, 5.0)
    chosen = Counter(names(router.plan().primary)[0] for _ in range(300))
    assert set(chosen) == {"a", "b"}
    assert chosen["a"] > chosen["b"]


def test_same_seed_same_plans() -> None:
    """Decisions are reproducible from the seed."""
    cands = [miner(f"m{i}", 0.1 + (i % 4) / 10, 0.5 + (i % 5) / 10) for i in range(30)]
    first, second = Router(cands, seed=3), Router(cands, seed=3)
    for strategy in Strategy:
        assert [first.plan(strategy) for _ in range(20)] == [second.plan(strategy)
                                                            for _ in range(20)]


def test_weighted_samples_by_incentive() -> None:
    """The primary is drawn in proportion to incentive; a zero-incentive miner never is."""
    router = Router([miner("a", 0.1), miner("b", 0.3), miner("c", 0.6),
                     miner("z", 0.0, 0.95)])
    draws = Counter(names(router.plan(Strategy.WEIGHTED).primary)[0] for _ in range(4000))
    assert draws["z"] == 0
    for name, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert abs(draws[name] / 4000 - share) < 0.03


def test_weighted_without_incentive_falls_back_to_best_score() -> None:
    """With no incentive anywhere the primary is the best-scoring miner."""
    router = Router([miner("a", 0.0, 0.6), miner("b", 0.0, 0.9)])
    assert names(router.plan(Strategy.WEIGHTED).primary) == ["b"]


def test_ensemble_picks_k_distinct_from_the_best_2k() -> None:
    """Ensemble members are distinct, best first, drawn from the top 2k; failover disjoint."""
    cands = [miner(f"m{i}", 0.5, 0.5 + i / 20) for i in range(10)]   # m9 best ... m0 worst
    router = Router(cands)
    top6 = {f"m{i}" for i in range(4, 10)}
    seen: set[str] = set()
    for _ in range(200):
        plan = router.plan(Strategy.ENSEMBLE)
        primary = names(plan.primary)
        assert len(set(primary)) == 3
        assert set(primary) <= top6
        assert primary == sorted(primary, key=lambda h: -int(h[1:]))
        assert not set(primary) & set(names(plan.failover))
        assert len(plan.failover) == 2
        seen |= set(primary)
    assert seen == top6


def test_ensemble_size_is_bounded_by_usable_miners() -> None:
    """Asking for more members than usable miners gives all of them and no failover."""
    plan = Router([miner("a"), miner("b", quality=0.7)]).plan(Strategy.ENSEMBLE, k=5)
    assert names(plan.primary) == ["a", "b"]
    assert plan.failover == ()


def test_ensemble_rejects_empty_size() -> None:
    """k must be at least one."""
    with pytest.raises(RouterInputError):
        Router([miner("a")]).plan(Strategy.ENSEMBLE, k=0)


def test_ejected_miner_is_skipped_until_half_open() -> None:
    """An ejected miner leaves every plan at once and returns when its probe may go."""
    router = Router([miner("a"), miner("b", quality=0.7)])
    router.eject("a")
    plan = router.plan()
    assert names(plan.attempts) == ["b"]
    router.clock.advance(5.0)
    assert names(router.plan().attempts) == ["a", "b"]
    assert router.breaker.admit("a") is not None   # the probe is out: blocked again
    assert names(router.plan().attempts) == ["b"]


def test_requirements_and_exclusions_filter() -> None:
    """Unfit miners and caller-excluded ones are never planned."""
    router = Router([miner("a"), miner("b", capabilities=frozenset({"chat", "tools"})),
                     miner("c", context=2048)])
    assert names(router.plan(requirements=Requirements(frozenset({"tools"}))).attempts) == ["b"]
    assert names(router.plan(requirements=Requirements(min_context=4096),
                             exclude={"a"}).attempts) == ["b"]


def test_nothing_usable_gives_empty_plan() -> None:
    """With every miner ejected the plan is empty and falsy."""
    router = Router([miner("a")])
    router.eject("a")
    plan = router.plan(Strategy.ENSEMBLE)
    assert plan == Plan(Strategy.ENSEMBLE, (), (), (), ())
    assert not plan


def test_rank_orders_all_usable() -> None:
    """``rank`` lists every usable miner best first, ties in pool order."""
    router = Router([miner("x", quality=0.7), miner("y"), miner("z", quality=0.7)])
    assert names(router.planner.rank(router.pool)) == ["y", "x", "z"]


def test_health_slot_reuse_is_followed() -> None:
    """When the tracker gives a departed miner's slot to another, the planner re-resolves."""
    router = Router([miner("a"), miner("b")])
    router.plan()
    router.health.retain(["a"])            # b's slot is freed ...
    for _ in range(5):
        router.health.record_wrong("z")     # ... and taken by z, which is often wrong
    plan = router.plan()
    assert plan.vote_weights == pytest.approx((0.93, 0.93))


# --- properties -------------------------------------------------------------------------------

CAPS = st.frozensets(st.sampled_from(["chat", "tools", "vision"]), max_size=3)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Router, Requirements, set[str], Strategy, int | None]:
    """A random pool, health, ejections, request filters and strategy."""
    n = draw(st.integers(1, 12))
    cands = [Candidate(
        uid=i, hotkey=f"hk{i}", url="http://x",
        incentive=draw(st.sampled_from([0.0, 0.001, 0.1, 0.5])),
        quality=draw(st.one_of(st.none(), st.floats(0.0, 1.0))),
        capabilities=draw(CAPS), context_length=draw(st.sampled_from([2048, 8192])))
        for i in range(n)]
    router = Router(cands, seed=draw(st.integers(0, 2**16)))
    events = st.tuples(st.integers(0, n - 1), st.sampled_from(["ok", "fail", "wrong", "right"]),
                       st.floats(0.0, 30.0))
    for i, kind, ttft in draw(st.lists(events, max_size=15)):
        hotkey = f"hk{i}"
        if kind == "ok":
            router.health.record_success(hotkey, ttft, 31.0)
        elif kind == "fail":
            router.health.record_failure(hotkey, "timeout")
        else:
            getattr(router.health, f"record_{kind}")(hotkey)
    for hotkey in draw(st.sets(st.sampled_from([c.hotkey for c in cands]))):
        router.eject(hotkey)
    requirements = Requirements(draw(st.frozensets(st.sampled_from(["chat", "tools"]),
                                                   max_size=1)),
                                draw(st.sampled_from([0, 4096])))
    exclude = draw(st.sets(st.sampled_from([c.hotkey for c in cands])))
    strategy = draw(st.sampled_from(list(Strategy)))
    k = draw(st.one_of(st.none(), st.integers(1, 6)))
    return router, requirements, exclude, strategy, k


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_plans_never_hold_blocked_ineligible_unfit_or_excluded(
        scenario: tuple[Router, Requirements, set[str], Strategy, int | None]) -> None:
    """Every planned miner is eligible, fits, is not ejected or excluded; none repeats."""
    router, requirements, exclude, strategy, k = scenario
    blocked = router.breaker.blocked()
    usable = [c for c in router.pool.candidates
              if meets(c, requirements) and c.hotkey not in blocked | exclude]
    for _ in range(3):
        plan = router.plan(strategy, requirements=requirements, exclude=exclude, k=k)
        attempts = plan.attempts
        assert len(set(names(attempts))) == len(attempts)
        for c in attempts:
            assert is_eligible(c, EligibilityConfig())
            assert meets(c, requirements)
            assert c.hotkey not in blocked
            assert c.hotkey not in exclude
        size = (k or 3) if strategy is Strategy.ENSEMBLE else 1
        assert len(plan.primary) == min(size, len(usable))
        assert len(plan.failover) == min(2, len(usable) - len(plan.primary))


@settings(max_examples=100, deadline=None)
@given(fast_ttfts=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=10),
       slow_ttfts=st.lists(st.floats(1.0, 1000.0), min_size=1, max_size=10),
       votes_before=st.lists(st.booleans(), max_size=10),
       failures=st.integers(0, 3), rights=st.integers(0, 10),
       others=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_wrong_fast_miner_ranks_below_slow_right_miner(
        fast_ttfts: list[float], slow_ttfts: list[float], votes_before: list[bool],
        failures: int, rights: int, others: int, seed: int) -> None:
    """A miner whose last vote was wrong ranks below an equal-standing, slower, always-right
    one, however fast it is, and is never the ``best`` primary."""
    cands = [miner("fast_wrong"), miner("slow_right")]
    cands += [miner(f"o{i}", quality=0.3) for i in range(others)]
    router = Router(cands, seed=seed)
    health = router.health
    for hotkey, ttfts in (("fast_wrong", fast_ttfts), ("slow_right", slow_ttfts)):
        for _ in range(failures):
            health.record_failure(hotkey, "timeout")
        for i in range(max(len(fast_ttfts), len(slow_ttfts))):
            health.record_success(hotkey, ttfts[i % len(ttfts)], 1000.0)
    for right in votes_before:
        (health.record_right if right else health.record_wrong)("fast_wrong")
    health.record_wrong("fast_wrong")
    for _ in range(rights):
        health.record_right("slow_right")
    ranking = names(router.planner.rank(router.pool))
    assert ranking.index("slow_right") < ranking.index("fast_wrong")
    assert names(router.plan().primary) == ["slow_right"]
