"""Hedging policy: the delay before a hedge, from the primary's p95 TTFT, within the budget."""

from __future__ import annotations

import pytest

from protocol.clock import ManualClock
from protocol.errors import ConfigError
from router.budget import BudgetConfig, RetryBudget
from router.health import HealthTracker
from router.hedging import HedgeConfig, hedge_delay


@pytest.mark.parametrize(("p95", "expected"), [
    (0.8, 0.8), (0.01, 0.05), (4.0, 4.0), (9.0, 5.0),
])
def test_delay_is_clamped_p95(p95: float, expected: float) -> None:
    """The delay is the p95 TTFT, kept within [50 ms, 5 s]."""
    assert hedge_delay(p95, ttft_timeout_s=10.0, budget_available=True) == expected


def test_multiplier_scales_p95() -> None:
    """``multiplier`` scales the p95 before clamping."""
    config = HedgeConfig(multiplier=1.5)
    assert hedge_delay(0.8, ttft_timeout_s=10.0, budget_available=True,
                       config=config) == pytest.approx(1.2)


def test_no_hedge_when_deadline_comes_first() -> None:
    """A hedge not due before the first-token timeout is pointless: failover handles it."""
    assert hedge_delay(3.0, ttft_timeout_s=3.0, budget_available=True) is None
    assert hedge_delay(2.9, ttft_timeout_s=3.0, budget_available=True) == 2.9


def test_no_hedge_without_budget_spare_or_when_disabled() -> None:
    """An empty budget, no spare miner, or hedging switched off: no hedge."""
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=False) is None
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=True, has_spare=False) is None
    assert hedge_delay(0.5, ttft_timeout_s=10.0, budget_available=True,
                       config=HedgeConfig(enabled=False)) is None


def test_cold_miner() -> None:
    """Without a p95, no hedge by default; ``cold_delay_s`` when configured."""
    assert hedge_delay(None, ttft_timeout_s=10.0, budget_available=True) is None
    assert hedge_delay(None, ttft_timeout_s=10.0, budget_available=True,
                       config=HedgeConfig(cold_delay_s=2.0)) == 2.0


def test_config_validation() -> None:
    """Positive multiplier; ordered, non-negative bounds."""
    with pytest.raises(ConfigError):
        HedgeConfig(multiplier=0.0)
    with pytest.raises(ConfigError):
        HedgeConfig(min_delay_s=2.0, max_delay_s=1.0)


def test_with_health_and_budget() -> None:
    """Wired to the tracker's p95 and the budget: hedges until the budget runs dry."""
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
    assert delays == [0.6, None]
