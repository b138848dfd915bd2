"""Scores to the ledger's weight row: identity mapping, normalisation, limits, u16 quantisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError
from validators.errors import MetagraphError, WeightsError
from validators.metagraph import Identity, Metagraph
from validators.scores import ScoreBook
from validators.weights import (
    U16_MAX,
    WeightLimits,
    cap_weights,
    quantize_u16,
    u16_row_is_valid,
    weights_from_scores,
)

HOTKEYS = ["h0", "h1", "h2", "h3", "h4", "h5"]
METAGRAPH = Metagraph(uids=np.arange(6), hotkeys=HOTKEYS, registered_at=np.arange(6) * 10,
                      serving=[True, False, True, True, False, True])


def ident(uid: int) -> Identity:
    """The identity holding ``uid`` in METAGRAPH."""
    return Identity(HOTKEYS[uid], uid * 10)


# --- metagraph ------------------------------------------------------------------------------


def test_metagraph_views() -> None:
    """Arrays become tuples; identities, serving and uid lookups follow the arrays."""
    assert METAGRAPH.uids == (0, 1, 2, 3, 4, 5)
    assert METAGRAPH.identities()[2] == Identity("h2", 20)
    assert METAGRAPH.serving_identities() == (ident(0), ident(2), ident(3), ident(5))
    assert METAGRAPH.serving_uids() == (0, 2, 3, 5)
    assert METAGRAPH.uid_of(ident(4)) == 4
    assert METAGRAPH.uid_of(Identity("h4", 999)) is None
    assert METAGRAPH.current([Identity("h4", 999), ident(1)]) == [ident(1)]
    assert Metagraph([1], ["a"], [0]).serving == (True,)


@pytest.mark.parametrize(("uids", "hotkeys", "blocks"), [
    ([0, 1], ["a"], [0, 0]), ([0, 0], ["a", "b"], [0, 0]), ([0, 1], ["a", "a"], [0, 0]),
    ([-1], ["a"], [0]),
])
def test_metagraph_rejects_inconsistent_arrays(uids: list[int], hotkeys: list[str],
                                               blocks: list[int]) -> None:
    """Different lengths, repeated uids or hotkeys, or negative uids are refused."""
    with pytest.raises(MetagraphError):
        Metagraph(uids, hotkeys, blocks)


# --- rows -----------------------------------------------------------------------------------


def test_normalised_row() -> None:
    """Positive scores are normalised over the uids their identities hold now."""
    row = weights_from_scores({ident(0): 0.3, ident(3): 0.1}, METAGRAPH)
    assert row.uids == (0, 3)
    assert row.weights == pytest.approx((0.75, 0.25), abs=1e-12)
    assert row.u16() == [65535, 21845]


def test_scores_of_old_registrations_are_ignored() -> None:
    """A score earned by a previous holder of a uid gives the new holder nothing."""
    book = ScoreBook(alpha=1.0, scores={Identity("h2", 0): 1.0, ident(5): 0.5})
    row = weights_from_scores(book, METAGRAPH)
    assert row.uids == (5,)
    assert row.weights == (1.0,)


def test_max_weight_limit_redistributes_iteratively() -> None:
    """The cap clips the top weights and spreads the excess in proportion, until none is over."""
    scores = {ident(u): s for u, s in enumerate([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])}
    limits = WeightLimits(max_weight_limit=U16_MAX // 5)  # a share of exactly 0.2
    row = weights_from_scores(scores, METAGRAPH, limits)
    assert row.uids == (0, 1, 2, 3, 4, 5)
    # The cap applies a relative margin of 1e-6 below the limit (see weights._CAP_MARGIN).
    assert row.weights == pytest.approx((0.2, 0.2, 0.2, 0.2, 0.1, 0.1), rel=1e-5)
    assert max(row.weights) <= 0.2
    assert row.u16() == [65535, 65535, 65535, 65535, 32768, 32768]
    assert u16_row_is_valid(row.u16(), limits, 6)


def test_min_allowed_weights_fills_serving_uids_first() -> None:
    """Too few scored uids: other serving uids get the floor, then non-serving ones."""
    scores = {ident(3): 0.8}
    row = weights_from_scores(scores, METAGRAPH, WeightLimits(min_allowed_weights=4))
    assert row.uids == (0, 2, 3, 5)
    assert row.weights == pytest.approx((1e-4 / 1.0003, 1e-4 / 1.0003, 1 / 1.0003,
                                         1e-4 / 1.0003), rel=1e-12)
    assert row.u16() == [7, 7, 65535, 7]
    row = weights_from_scores(scores, METAGRAPH, WeightLimits(min_allowed_weights=5))
    assert row.uids == (0, 1, 2, 3, 5)
    row = weights_from_scores(scores, METAGRAPH, WeightLimits(min_allowed_weights=4),
                              exclude={0})
    assert row.uids == (1, 2, 3, 5)


def test_own_uid_fills_only_when_the_minimum_needs_every_uid() -> None:
    """On a subnet no bigger than the minimum, the validator's own (excluded) uid takes the
    last floor weight, which the ledger accepts, rather than leaving it unable to set any."""
    row = weights_from_scores({ident(0): 1.0}, METAGRAPH, WeightLimits(min_allowed_weights=6),
                              exclude={1})
    assert row.uids == (0, 1, 2, 3, 4, 5)
    assert row.weights[1] == pytest.approx(row.weights[2])
    two = Metagraph(uids=[0, 1], hotkeys=["me", "miner"], registered_at=[0, 0])
    row = weights_from_scores({Identity("miner", 0): 0.8}, two,
                              WeightLimits(min_allowed_weights=8), exclude={0})
    assert row.uids == (0, 1)
    assert u16_row_is_valid(row.u16(), WeightLimits(min_allowed_weights=8), 2)


def test_min_allowed_weights_is_capped_at_the_uid_count() -> None:
    """As on the ledger, a minimum above the uid count asks for every uid."""
    row = weights_from_scores({ident(3): 0.8}, METAGRAPH, WeightLimits(min_allowed_weights=50))
    assert row.uids == (0, 1, 2, 3, 4, 5)
    assert u16_row_is_valid(row.u16(), WeightLimits(min_allowed_weights=50), 6)


def test_cap_needing_more_weights_than_scores_spreads_fillers_up() -> None:
    """A cap of 1/4 with one scored uid forces four equal weights."""
    limits = WeightLimits(max_weight_limit=-(-U16_MAX // 4))
    row = weights_from_scores({ident(3): 0.8}, METAGRAPH, limits)
    assert row.uids == (0, 2, 3, 5)
    assert row.weights == pytest.approx((0.25,) * 4, abs=1e-5)
    assert u16_row_is_valid(row.u16(), limits, 6)


@pytest.mark.parametrize(("scores", "limits", "exclude", "message"), [
    ({}, WeightLimits(), (), "positive"),
    ({ident(0): 0.0, Identity("gone", 1): 1.0}, WeightLimits(), (), "positive"),
    ({ident(0): 1.0}, WeightLimits(max_weight_limit=6553), (), "has only 6 uids"),
    ({ident(0): 1.0}, WeightLimits(), {0}, "positive"),
])
def test_weights_cannot_be_set(scores: dict[Identity, float], limits: WeightLimits,
                               exclude: set[int], message: str) -> None:
    """Nothing earned, or rules no eligible set of uids can meet: WeightsError."""
    with pytest.raises(WeightsError, match=message):
        weights_from_scores(scores, METAGRAPH, limits, exclude=exclude)


def test_dust_scores_count_as_zero() -> None:
    """Scores below min_score (the tail of a decayed average) get no weight."""
    row = weights_from_scores({ident(0): 0.5, ident(2): 1e-7}, METAGRAPH)
    assert row.uids == (0,)
    row = weights_from_scores({ident(0): 0.5, ident(2): 1e-7}, METAGRAPH,
                              WeightLimits(min_score=0.0))
    assert row.uids == (0, 2)
    assert row.u16() == [65535, 1]


def test_limits_validation() -> None:
    """Out-of-range limits are configuration errors; needed() counts the cap's minimum."""
    for kwargs in ({"max_weight_limit": 0}, {"max_weight_limit": 65536},
                   {"min_allowed_weights": -1}, {"floor": 0.0}, {"floor": math.nan},
                   {"min_score": 1.0}, {"min_score": -0.1}):
        with pytest.raises(ConfigError):
            WeightLimits(**kwargs)
    assert WeightLimits(min_allowed_weights=3).needed(2) == 2
    assert WeightLimits(max_weight_limit=U16_MAX // 5).needed(2) == 5
    assert WeightLimits(max_weight_limit=U16_MAX // 5 + 1).needed(2) == 5


# --- helpers --------------------------------------------------------------------------------


def test_cap_weights_exact() -> None:
    """cap_weights normalises, caps and redistributes; zeros stay zero."""
    assert cap_weights([2.0, 1.0, 1.0], 1.0).tolist() == [0.5, 0.25, 0.25]
    capped = cap_weights([0.7, 0.2, 0.1, 0.0], 0.5)
    assert capped.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6, 0.0], abs=1e-12)
    assert cap_weights([3.0, 1.0], 0.25).tolist() == [0.5, 0.5]  # infeasible: equal
    for bad in ([0.0, 0.0], [-1.0, 2.0], [math.nan, 1.0]):
        with pytest.raises(WeightsError):
            cap_weights(bad, 0.5)


@pytest.mark.parametrize(("weights", "u16"), [
    ([], []), ([0.0, 0.0], [0, 0]), ([1.0], [65535]),
    ([0.5, 0.25, 0.25], [65535, 32768, 32768]), ([0.75, 0.25], [65535, 21845]),
    ([1.0, 1e-300], [65535, 1]), ([2.0, 1.0, 0.0], [65535, 32768, 0]),
])
def test_quantize_u16(weights: list[float], u16: list[int]) -> None:
    """The largest weight becomes 65535; the others are scaled and rounded up; zeros stay 0."""
    assert quantize_u16(weights) == u16


def test_quantize_u16_rejects_bad_weights() -> None:
    """Negative or non-finite weights cannot be quantised."""
    for bad in ([-0.1, 1.0], [math.inf], [math.nan]):
        with pytest.raises(WeightsError):
            quantize_u16(bad)


def test_u16_row_is_valid_mirrors_the_ledger() -> None:
    """Too few non-zero weights or a too-large share fail the integer check."""
    limits = WeightLimits(min_allowed_weights=2, max_weight_limit=-(-U16_MAX // 2))
    assert u16_row_is_valid([65535, 65535], limits, 5)
    assert not u16_row_is_valid([65535, 65535], WeightLimits(max_weight_limit=U16_MAX // 2), 5)
    assert not u16_row_is_valid([65535, 0], limits, 5)
    assert not u16_row_is_valid([65535, 65000], limits, 5)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), min_allowed=st.integers(0, 50),
       limit=st.integers(1, U16_MAX))
def test_rows_are_normalised_and_respect_limits(data: st.DataObject, n: int, min_allowed: int,
                                                limit: int) -> None:
    """Weights sum to 1, meet min_allowed_weights and the cap; the u16 row passes the ledger."""
    scores = data.draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
                                min_size=n, max_size=n))
    serving = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    uids = data.draw(st.permutations(range(n)))
    metagraph = Metagraph(uids, [f"h{u}" for u in uids], [u * 7 for u in uids], serving)
    book = {Identity(f"h{u}", u * 7): s for u, s in zip(uids, scores, strict=True)}
    limits = WeightLimits(min_allowed_weights=min_allowed, max_weight_limit=limit)
    if not any(s >= limits.min_score and s > 0 for s in scores) or limits.needed(n) > n:
        with pytest.raises(WeightsError):
            weights_from_scores(book, metagraph, limits)
        return
    row = weights_from_scores(book, metagraph, limits)
    assert list(row.uids) == sorted(row.uids)
    assert math.isclose(sum(row.weights), 1.0, abs_tol=1e-9)
    assert all(w > 0 for w in row.weights)
    assert len(row.uids) >= min(min_allowed, n)
    assert max(row.weights) <= limits.max_share + 1e-12
    assert u16_row_is_valid(row.u16(), limits, n)
    # Array order does not matter: the same identities in another order give the same row.
    order = data.draw(st.permutations(range(n)))
    shuffled = Metagraph([uids[i] for i in order], [f"h{uids[i]}" for i in order],
                         [uids[i] * 7 for i in order], [serving[i] for i in order])
    again = weights_from_scores(book, shuffled, limits)
    assert again.uids == row.uids
    assert again.weights == pytest.approx(row.weights, rel=1e-12)
