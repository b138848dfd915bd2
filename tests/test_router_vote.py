"""Ensemble aggregation: normalisation, weighted majority, early stop, best-of-n, first valid."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError
from router.errors import RouterInputError
from router.vote import Ballot, VoteResult, VoteTally, normalise


@pytest.mark.parametrize(("raw", "expected"), [
    ("46", "46"), ("46.0", "46"), (" 46. ", "46"), ("+46", "46"), ("4.6e1", "46"),
    ("46.50", "46.5"), ("-0.0", "0"), ("1,000", "1000"), ("1,000.25", "1000.25"),
    (".5", "0.5"), ("1e3", "1000"), ("1E-2", "0.01"), ("1e999999", "1e999999"),
    ("Paris!", "paris"), ("  The   Eiffel\tTower ?", "the eiffel tower"),
    ("Yes.\nBecause it is.", "yes"), ("\n\n  Blue \n", "blue"), ("", ""), ("...", ""),
    ("1,00", "1,00"), ("v1.2.3", "v1.2.3"), ("nan", "nan"), ("inf", "inf"), ("a. .", "a"),
])
def test_normalise(raw: str, expected: str) -> None:
    """First line, lowercase, collapsed spaces, no trailing punctuation, canonical numbers."""
    assert normalise(raw) == expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalise_is_total_and_idempotent(raw: str) -> None:
    """Any text normalises without error, and normalising twice changes nothing."""
    once = normalise(raw)
    assert normalise(once) == once


@settings(max_examples=100, deadline=None)
@given(st.integers(-10**12, 10**12), st.integers(0, 4))
def test_integer_spellings_agree(n: int, zeros: int) -> None:
    """"46", "46.0", "46.00", "+46" are one answer."""
    plain = normalise(str(n))
    assert normalise(f"{n}." + "0" * zeros) == plain
    assert normalise(f"{n:+d}") == plain


def tally_of(*votes: tuple[str, str, float], max_weight: float = 1.0) -> VoteTally:
    """A tally holding ``votes`` (hotkey, answer, weight) in that order."""
    tally = VoteTally(max_weight=max_weight)
    for hotkey, answer, weight in votes:
        tally.add(hotkey, answer, weight)
    return tally


def test_weighted_majority_with_breakdown() -> None:
    """The heaviest ballot wins; the result lists every ballot, winner first."""
    tally = tally_of(("a", "46", 0.5), ("b", "46.0", 0.25), ("c", "47", 0.9), ("d", "", 0.3))
    result = tally.majority()
    assert result == VoteResult(
        method="majority", winner="47", answer="47", source="c", weight=0.9,
        total_weight=1.65,
        ballots=(Ballot("47", 0.9, ("c",)), Ballot("46", 0.75, ("a", "b"))),
        invalid=("d",))
    assert result.agreeing == ("c",)
    assert result.dissenting == ("a", "b")


def test_majority_raw_answer_comes_from_heaviest_voter() -> None:
    """The returned raw text is the winning ballot's heaviest voter's."""
    result = tally_of(("a", "46.0", 0.2), ("b", " 46 ", 0.7), ("c", "12", 0.8)).majority()
    assert (result.winner, result.answer, result.source) == ("46", " 46 ", "b")


def test_majority_ties_break_by_voters_then_text() -> None:
    """Equal weight: more voters win; then the smaller answer text."""
    assert tally_of(("a", "x", 0.5), ("b", "y", 0.25), ("c", "y", 0.25)).majority().winner == "y"
    assert tally_of(("a", "b", 0.5), ("c", "a", 0.5)).majority().winner == "a"


def test_min_agree_withholds_a_lonely_winner() -> None:
    """With ``min_agree`` 2 a single heavy voter is not a winner."""
    result = tally_of(("a", "x", 1.0), ("b", "y", 0.1)).majority(min_agree=2)
    assert result.winner is None
    assert result.answer is None
    assert result.agreeing == ()
    assert result.dissenting == ()
    assert result.ballots == (Ballot("x", 1.0, ("a",)), Ballot("y", 0.1, ("b",)))


def test_no_valid_answer() -> None:
    """Only invalid answers: no winner, everyone listed as invalid."""
    result = tally_of(("b", "  ", 1.0), ("a", "!", 1.0)).majority()
    assert result.winner is None
    assert result.invalid == ("a", "b")
    assert result.total_weight == 0.0


def test_add_rejects_second_answer_and_bad_weight() -> None:
    """One answer per miner; weights in [0, max_weight]."""
    tally = tally_of(("a", "x", 0.5))
    with pytest.raises(RouterInputError):
        tally.add("a", "y", 0.5)
    for weight in (-0.1, 1.1, math.nan):
        with pytest.raises(RouterInputError):
            tally.add("b", "y", weight)
    with pytest.raises(ConfigError):
        VoteTally(max_weight=0.0)


def test_decided_early_when_remaining_cannot_overturn() -> None:
    """Two of five agreeing at weight 1 each decide only once the rest cannot catch up."""
    tally = tally_of(("a", "42", 1.0), ("b", "42", 1.0))
    assert not tally.decided(min_agree=2, total_expected=5)       # 2 > 0 + 3 is false
    tally.add("c", "42", 1.0)
    assert tally.decided(min_agree=2, total_expected=5)            # 3 > 0 + 2
    tally = tally_of(("a", "42", 1.0), ("b", "42", 1.0), ("c", "7", 0.5))
    assert not tally.decided(min_agree=2, total_expected=5)        # 2 > 0.5 + 2 is false
    assert tally.decided(min_agree=2, total_expected=4)            # 2 > 0.5 + 1
    assert not tally.decided(min_agree=3, total_expected=3)        # nothing remains, two agree


def test_decided_uses_weights() -> None:
    """Weight decides, not head count: a heavy leader settles it early."""
    tally = tally_of(("a", "x", 1.0), ("b", "y", 0.1), ("c", "y", 0.1), ("d", "x", 0.5))
    assert tally.decided(min_agree=2, total_expected=5)            # 1.5 > 0.2 + 1
    assert not tally.decided(min_agree=3, total_expected=5)        # only two agree
    light = tally_of(("a", "x", 0.25), ("b", "x", 0.25), max_weight=0.25)
    assert light.decided(min_agree=1, total_expected=3)            # 0.5 > 0 + 0.25


def test_decided_needs_a_strict_lead() -> None:
    """A possible tie is not decided; all answers in and a tie broken by text is."""
    tally = tally_of(("a", "x", 1.0), ("b", "y", 1.0))
    assert not tally.decided(min_agree=1, total_expected=3)
    assert tally.decided(min_agree=1, total_expected=2)
    assert not tally_of().decided(min_agree=1, total_expected=0)


def test_possible() -> None:
    """``possible`` turns false once no answer can reach ``min_agree`` voters."""
    tally = tally_of(("a", "x", 1.0), ("b", "y", 1.0))
    assert tally.possible(min_agree=2, total_expected=3)
    assert not tally.possible(min_agree=3, total_expected=3)
    assert tally_of().possible(min_agree=3, total_expected=3)


def test_best_of_n() -> None:
    """The scorer's favourite raw answer wins; ballots carry each answer's best score."""
    tally = tally_of(("a", "short", 1.0), ("b", "a longer answer", 0.1), ("c", "SHORT", 1.0))
    result = tally.best_of(len)
    assert (result.method, result.winner, result.answer, result.source) == (
        "best_of_n", "a longer answer", "a longer answer", "b")
    assert result.ballots == (Ballot("a longer answer", 15.0, ("b",)),
                              Ballot("short", 5.0, ("a", "c")))


def test_best_of_n_ignores_non_finite_scores() -> None:
    """NaN or infinite scores cannot win; with none finite there is no winner."""
    scores = {"x": math.nan, "y": 1.0, "z": math.inf}
    tally = tally_of(("a", "x", 1.0), ("b", "y", 1.0), ("c", "z", 1.0))
    assert tally.best_of(lambda s: scores[s]).winner == "y"
    assert tally_of(("a", "x", 1.0)).best_of(lambda s: math.nan).winner is None


def test_first_valid_follows_arrival() -> None:
    """The first valid answer wins, even against a heavier later majority."""
    tally = tally_of(("a", "", 1.0), ("b", "Seven", 0.1), ("c", "8", 1.0), ("d", "8", 1.0))
    result = tally.first_valid()
    assert (result.winner, result.answer, result.source) == ("seven", "Seven", "b")
    assert result.ballots == (Ballot("seven", 0.1, ("b",)), Ballot("8", 2.0, ("c", "d")))
    assert result.invalid == ("a",)


# --- properties -------------------------------------------------------------------------------

ANSWERS = st.sampled_from(["46", "46.0", " 46 ", "47", "Paris", "paris.", "", "x y", "X  Y!"])
WEIGHTS = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.25, 0.5, 0.7, 1.0])


@st.composite
def ballots_and_order(draw: st.DrawFn) -> tuple[list[tuple[str, str, float]], list[int]]:
    """Distinct voters with answers and weights, and a permutation of them."""
    n = draw(st.integers(0, 9))
    votes = [(f"hk{i}", draw(ANSWERS), draw(WEIGHTS)) for i in range(n)]
    return votes, draw(st.permutations(range(n)))


@settings(max_examples=150, deadline=None)
@given(ballots_and_order(), st.integers(1, 3))
def test_winner_is_invariant_to_answer_order(
        case: tuple[list[tuple[str, str, float]], list[int]], min_agree: int) -> None:
    """Majority and best-of-n results do not depend on the order answers arrive in."""
    votes, order = case
    forward, shuffled = tally_of(*votes), tally_of(*(votes[i] for i in order))
    assert forward.majority(min_agree) == shuffled.majority(min_agree)
    assert forward.best_of(len) == shuffled.best_of(len)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(ANSWERS, WEIGHTS), min_size=1, max_size=8), st.data())
def test_decided_winner_survives_any_remaining_answers(
        votes: list[tuple[str, float]], data: st.DataObject) -> None:
    """Once ``decided``, no choice of the remaining answers changes the winner."""
    total = len(votes)
    tally = VoteTally()
    for i, (answer, weight) in enumerate(votes):
        tally.add(f"hk{i}", answer, weight)
        if tally.decided(min_agree=1, total_expected=total):
            winner = tally.majority().winner
            for j in range(i + 1, total):
                tally.add(f"hk{j}", data.draw(ANSWERS), data.draw(WEIGHTS))
            assert tally.majority().winner == winner
            return
