"""Candidates, consensus eligibility, per-request requirements and the candidate pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocol.errors import ConfigError, EnsembleError
from router.candidates import (
    ANY,
    Candidate,
    CandidatePool,
    EligibilityConfig,
    Requirements,
    eligible,
    is_eligible,
    meets,
)
from router.errors import NoCandidatesError, RouterError, RouterInputError


def miner(uid: int, **fields: object) -> Candidate:
    """A candidate with a hotkey and URL derived from ``uid``."""
    return Candidate(uid=uid, hotkey=f"hk{uid}", url=f"http://10.0.0.{uid}:8091", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("fields", [
    {"incentive": 1.5}, {"incentive": -0.1}, {"trust": math.nan}, {"quality": 1.01},
    {"quality": math.inf}, {"context_length": -1}, {"capabilities": {"chat"}},
])
def test_candidate_rejects_invalid_fields(fields: dict[str, object]) -> None:
    """Out-of-range proportions, negative context and a mutable capability set are refused."""
    with pytest.raises(RouterInputError):
        miner(1, **fields)


def test_candidate_requires_hotkey() -> None:
    """Identity is the hotkey, so an empty one is refused."""
    with pytest.raises(RouterInputError):
        Candidate(uid=0, hotkey="", url="http://x")


def test_eligibility_config_rejects_out_of_range() -> None:
    """Thresholds are proportions in [0, 1]."""
    with pytest.raises(ConfigError):
        EligibilityConfig(min_quality=2.0)
    with pytest.raises(ConfigError):
        EligibilityConfig(quality_floor=-0.5)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"incentive": 0.01}, True),
    ({"incentive": 0.0}, False),
    ({"incentive": 0.0, "quality": 0.5}, True),
    ({"incentive": 0.0, "quality": 0.49}, False),
    ({"incentive": 0.2, "quality": 0.1}, True),
])
def test_is_eligible_by_incentive_or_quality(fields: dict[str, object], expected: bool) -> None:
    """Default rule: incentive above zero, or validator quality at least one half."""
    assert is_eligible(miner(1, **fields), EligibilityConfig()) is expected


def test_quality_floor_overrides_incentive() -> None:
    """A measured quality below the floor makes even a high-incentive miner ineligible."""
    config = EligibilityConfig(quality_floor=0.3)
    assert is_eligible(miner(1, incentive=0.9, quality=0.2), config) is False
    assert is_eligible(miner(2, incentive=0.9, quality=0.3), config) is True
    assert is_eligible(miner(3, incentive=0.9), config) is True


def test_min_trust_and_min_incentive() -> None:
    """Trust below ``min_trust`` or incentive not above ``min_incentive`` excludes."""
    config = EligibilityConfig(min_incentive=0.05, min_trust=0.5)
    assert is_eligible(miner(1, incentive=0.06, trust=0.5), config) is True
    assert is_eligible(miner(2, incentive=0.06, trust=0.4), config) is False
    assert is_eligible(miner(3, incentive=0.05, trust=0.9), config) is False


def test_meets_capabilities_context_and_model() -> None:
    """Every required tag, at least the context length, and the model if one is named."""
    c = miner(1, capabilities=frozenset({"chat", "tools"}), context_length=8192, model="m-7b")
    assert meets(c, ANY)
    assert meets(c, Requirements(frozenset({"chat", "tools"}), 8192, "m-7b"))
    assert not meets(c, Requirements(frozenset({"chat", "vision"})))
    assert not meets(c, Requirements(min_context=8193))
    assert not meets(c, Requirements(model="m-70b"))


def test_eligible_keeps_order() -> None:
    """``eligible`` filters and keeps the given order."""
    cands = [miner(3, incentive=0.1), miner(1), miner(2, quality=0.8)]
    assert [c.uid for c in eligible(cands, EligibilityConfig())] == [3, 2]


def test_pool_arrays() -> None:
    """The pool holds the eligible candidates and their arrays, position for position."""
    pool = CandidatePool([miner(0, incentive=0.2, trust=0.5, quality=0.9), miner(1),
                          miner(2, incentive=0.4, trust=0.25),
                          miner(3, quality=0.6, trust=1.0)])
    assert pool.hotkeys == ("hk0", "hk2", "hk3")
    assert len(pool) == 3
    assert pool.index == {"hk0": 0, "hk2": 1, "hk3": 2}
    assert pool.incentive.tolist() == [0.2, 0.4, 0.0]
    assert pool.trust.tolist() == [0.5, 0.25, 1.0]
    assert pool.incentive_rel.tolist() == [0.5, 1.0, 0.0]
    np.testing.assert_array_equal(pool.quality, [0.9, math.nan, 0.6])
    assert not pool.incentive.flags.writeable


def test_pool_without_incentive_has_zero_relative_incentive() -> None:
    """With no incentive anywhere, relative incentive is zero rather than NaN."""
    pool = CandidatePool([miner(0, quality=0.7), miner(1, quality=0.9)])
    assert pool.incentive_rel.tolist() == [0.0, 0.0]


def test_empty_pool() -> None:
    """No eligible miner gives an empty pool with empty arrays."""
    pool = CandidatePool([miner(0)])
    assert len(pool) == 0
    assert pool.incentive.shape == (0,)
    assert pool.mask(ANY).shape == (0,)


def test_pool_rejects_duplicate_hotkeys() -> None:
    """One hotkey, one candidate."""
    with pytest.raises(RouterInputError):
        CandidatePool([miner(0, incentive=0.1),
                       Candidate(uid=9, hotkey="hk0", url="http://y", incentive=0.2)])


def test_pool_mask_is_memoised_and_read_only() -> None:
    """Masks are computed once per distinct requirements and cannot be altered."""
    pool = CandidatePool([miner(0, incentive=0.1, context_length=4096),
                          miner(1, incentive=0.1, context_length=32768)])
    need = Requirements(min_context=8192)
    first = pool.mask(need)
    assert first.tolist() == [False, True]
    assert pool.mask(Requirements(min_context=8192)) is first
    assert not first.flags.writeable


def test_router_errors_hang_off_the_one_tree() -> None:
    """Router errors are EnsembleErrors; invalid input is also a ValueError."""
    assert issubclass(RouterInputError, RouterError)
    assert issubclass(RouterInputError, ValueError)
    assert issubclass(NoCandidatesError, RouterError)
    assert issubclass(RouterError, EnsembleError)
