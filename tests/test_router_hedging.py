"""Hedging policy: the delay before a hedge, from the primary's and the fleet's p95 TTFT."""

from __future__ import annotations

import pytest

from protocol.clock import ManualClock
from protocol.errors import ConfigError
from router.budget import BudgetConfig, RetryBudget
from router.health import HealthTracker
from router.hedging import HedgeConfig, hedge_delay

ONE = HedgeConfig(multiplier=1.0)


@pytest.mark.parametrize(("p95", "expected"), [
    (0.8, 0.8), (0.01, 0.05), (4.0, 4.0), (9.0, 5.0),
])
def test_delay_is_clamped_p95(p95: float, expected: float) -> None:
    """At multiplier 1 the delay is the p95 TTFT, kept within [50 ms, 5 s]."""
    assert hedge_delay(p95, ttft_timeout_s=10.0, budget_available=True, config=ONE) == expected


def test_default_multiplier_is_past_the_p95() -> None:
    """By default a hedge waits 1.5 x the p95 (about a healthy miner's p99), so a healthy
    fleet hedges far fewer than the one request in twenty that a p95 trigger would."""
    assert HedgeConfig().multiplier == 1.5
    assert hedge_delay(0.04, ttft_timeout_s=10.0, budget_available=True) == pytest.approx(0.06)
    assert hedge_delay(0.8, ttft_timeout_s=10.0, budget_available=True) == pytest.approx(1.2)


def test_multiplier_scales_p95() -> None:
    """``multiplier`` scales the p95 before clamping."""
    config = HedgeConfig(multiplier=2.0)
    assert hedge_delay(0.8, ttft_timeout_s=10.0, budget_available=True,
                       config=config) == pytest.approx(1.6)
    assert hedge_delay(3.0, ttft_timeout_s=10.0, budget_available=True,
                       config=config) == 5.0


@pytest.mark.parametrize(("own", "fleet", "expected"), [
    # A straggler whose own p95 grew to 230 ms is hedged after the fleet's 45 ms x 1.5.
    (0.23, 0.045, 0.0675),
    # A miner faster than the fleet is hedged in its own tail.
    (0.04, 0.045, 0.06),
    # Equal p95s: either.
    (0.045, 0.045, 0.0675),
    # A cold miner (no p95 of its own) is hedged on the fleet's.
    (None, 0.045, 0.0675),
    # No fleet p95 yet: the miner's own.
    (0.04, None, 0.06),
    # Clamped after taking the minimum.
    (0.2, 0.02, 0.05),
    (9.0, 7.0, 5.0),
])
def test_fleet_p95_caps_own(own: float | None, fleet: float | None, expected: float) -> None:
    """The delay is ``multiplier x min(own p95, fleet p95)`` within the bounds."""
    assert hedge_delay(own, ttft_timeout_s=10.0, budget_available=True,
                       fleet_p95_s=fleet) == pytest.approx(expected)


def test_fleet_ignored_when_off() -> None:
    """``use_fleet=False``: only the miner's own p95 (the fleet's still stands in for a cold
    miner)."""
    config = HedgeConfig(use_fleet=False)
    assert hedge_delay(0.23, ttft_timeout_s=10.0, budget_available=True, fleet_p95_s=0.045,
                       config=config) == pytest.approx(0.345)
    assert hedge_delay(None, ttft_timeout_s=10.0, budget_available=True, fleet_p95_s=0.045,
                       config=config) == pytest.approx(0.0675)


def test_no_hedge_when_deadline_comes_first() -> None:
    """A hedge not due before the first-token timeout is pointless: failover handles it."""
    assert hedge_delay(2.0, ttft_timeout_s=3.0, budget_available=True) is None  # 3.0 due
    assert hedge_delay(3.0, ttft_timeout_s=3.0, budget_available=True, config=ONE) is None
    assert hedge_delay(2.9, ttft_timeout_s=3.0, budget_available=True, config=ONE) == 2.9
    # The fleet's p95 can bring a hedge back before the timeout.
    assert hedge_delay(2.0, ttft_timeout_s=3.0, budget_available=True,
                       fleet_p95_s=1.0) == pytest.approx(1.5)


def test_no_hedge_without_budget_spare_or_when_disabled() -> None:
    """An empty budget, no spare miner, or hedging switched off: no hedge."""
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=False,
                       fleet_p95_s=0.1) is None
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=True, has_spare=False,
                       fleet_p95_s=0.1) is None
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=True, fleet_p95_s=0.1,
                       config=HedgeConfig(enabled=False)) is None


def test_cold_miner() -> None:
    """Without any p95 (own or fleet), no hedge by default; ``cold_delay_s`` when configured."""
    assert hedge_delay(None, ttft_timeout_s=10.0, budget_available=True) is None
    assert hedge_delay(None, ttft_timeout_s=10.0, budget_available=True,
                       config=HedgeConfig(cold_delay_s=2.0)) == 2.0
    assert hedge_delay(None, ttft_timeout_s=1.0, budget_available=True,
                       config=HedgeConfig(cold_delay_s=2.0)) is None


def test_config_validation() -> None:
    """Positive multiplier; ordered, non-negative bounds."""
    with pytest.raises(ConfigError):
        HedgeConfig(multiplier=0.0)
    with pytest.raises(ConfigError):
        HedgeConfig(multiplier=float("inf"))
    with pytest.raises(ConfigError):
        HedgeConfig(min_delay_s=2.0, max_delay_s=1.0)
    with pytest.raises(ConfigError):
        HedgeConfig(cold_delay_s=-1.0)


def test_with_health_and_budget() -> None:
    """Wired to the tracker's p95s and the budget: hedges until the budget runs dry."""
    health = HealthTracker()
    for ttft in (0.2, 0.3, 0.25, 0.4, 0.35, 0.3, 0.2, 0.6, 0.3, 0.25):
        health.record_success("hk", ttft, 1.0)
    budget = RetryBudget(BudgetConfig(min_extra=1), ManualClock())
    delays = []
    for _ in range(2):
        delay = hedge_delay(health.p95_ttft("hk"), ttft_timeout_s=3.0,
                            budget_available=budget.can_spend())
        delays.append(delay)
        if delay is not None:
            assert budget.try_spend()
    assert delays == [pytest.approx(0.9), None]


def test_straggler_hedged_on_fleet_p95() -> None:
    """A miner that turned slow (its own p95 now 1.2 s) is hedged at the fleet's p95 x 1.5."""
    health = HealthTracker()
    for i in range(10):
        health.record_success("fast", 0.02 + 0.002 * i, 1.0)  # p95 0.038
        health.record_success("slow", 0.02 if i < 5 else 1.2, 1.0)  # p95 1.2
    fleet = 0.038
    assert health.p95_ttft("slow") == 1.2
    assert health.p95_ttft("fast") == pytest.approx(fleet)
    delay = hedge_delay(health.p95_ttft("slow"), ttft_timeout_s=3.0, budget_available=True,
                        fleet_p95_s=fleet)
    assert delay == pytest.approx(0.057)
