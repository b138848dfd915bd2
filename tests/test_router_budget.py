"""The router-wide retry budget: extras <= ratio x primaries + min_extra over a sliding window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.clock import ManualClock
from protocol.errors import ConfigError
from router.budget import BudgetConfig, RetryBudget


def make(**fields: float) -> tuple[RetryBudget, ManualClock]:
    """A budget on a manual clock."""
    clock = ManualClock()
    return RetryBudget(BudgetConfig(**fields), clock), clock  # type: ignore[arg-type]


def test_cold_router_gets_min_extra() -> None:
    """With no traffic yet, exactly ``min_extra`` (2) extras are granted."""
    budget, _ = make()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    assert budget.extras == 2


def test_ratio_of_primaries() -> None:
    """30 primaries at 10 % allow 3 + 2 extras; the sixth is refused."""
    budget, _ = make()
    for _ in range(30):
        budget.record_primary()
    assert budget.available() == 5
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]
    assert budget.available() == 0


def test_fractional_allowance_rounds_down() -> None:
    """Nine primaries at 10 % give 0.9 of a token: not a whole extra beyond the floor."""
    budget, _ = make(min_extra=0)
    for _ in range(9):
        budget.record_primary()
    assert budget.try_spend() is False
    budget.record_primary()
    assert budget.try_spend() is True


def test_can_spend_takes_nothing() -> None:
    """``can_spend`` only looks."""
    budget, _ = make(min_extra=1)
    assert budget.can_spend()
    assert budget.can_spend()
    assert budget.try_spend() is True
    assert budget.can_spend() is False


def test_window_slides() -> None:
    """Events leave the window exactly ``window_s`` after they happened."""
    budget, clock = make(min_extra=0)
    for _ in range(20):
        budget.record_primary()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(5.0)
    for _ in range(10):
        budget.record_primary()
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(5.0)   # the first 20 primaries and 2 extras expire
    assert (budget.primaries, budget.extras) == (10, 1)
    assert budget.available() == 0
    clock.advance(5.0)
    assert (budget.primaries, budget.extras) == (0, 0)


def test_config_validation() -> None:
    """Ratio and floor non-negative, window positive."""
    for fields in ({"ratio": -0.1}, {"ratio": math.inf}, {"min_extra": -1}, {"window_s": 0.0}):
        with pytest.raises(ConfigError):
            BudgetConfig(**fields)  # type: ignore[arg-type]


EVENTS = st.lists(st.one_of(
    st.just(("primary", 0.0)), st.just(("spend", 0.0)),
    st.tuples(st.just("advance"), st.floats(0.0, 6.0)),
), max_size=200)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from([0.0, 0.1, 0.25, 1.0]), st.integers(0, 3))
def test_never_more_than_ratio_times_primaries_plus_floor(
        events: list[tuple[str, float]], ratio: float, min_extra: int) -> None:
    """At every grant, extras in the last window <= ratio * primaries in it + min_extra."""
    budget, clock = make(ratio=ratio, min_extra=min_extra, window_s=10.0)
    primaries: list[float] = []
    extras: list[float] = []
    for kind, dt in events:
        if kind == "advance":
            clock.advance(dt)
        elif kind == "primary":
            budget.record_primary()
            primaries.append(clock.monotonic())
        else:
            granted = budget.try_spend()
            now = clock.monotonic()
            if granted:
                extras.append(now)
            in_window = len([t for t in primaries if t > now - 10.0])
            spent = len([t for t in extras if t > now - 10.0])
            if granted:
                assert spent <= ratio * in_window + min_extra + 1e-9
            else:  # and it is not stingy: a refusal means one more would break the bound
                assert spent + 1 > ratio * in_window + min_extra + 1e-9


def test_keep_reserves_a_share_of_the_budget() -> None:
    """With keep=0.5, spending stops once half of ratio * primaries + floor is used."""
    budget, _ = make(ratio=0.1, min_extra=2)
    for _ in range(40):
        budget.record_primary()
    # whole budget: 0.1 * 40 + 2 = 6 tokens; keep=0.5 leaves 3 untouched
    assert [budget.try_spend(keep=0.5) for _ in range(4)] == [True, True, True, False]
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
