"""Score moving averages per identity (hotkey, registration block), never per uid."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import pack, unpack
from protocol.errors import ConfigError, EnsembleError
from validators.errors import ValidatorStateError
from validators.metagraph import Identity, Metagraph
from validators.scores import DEFAULT_ALPHA, ScoreBook

ALICE = Identity("alice", 10)
ALICE_AGAIN = Identity("alice", 500)
BOB = Identity("bob", 20)


def test_ema_exact_values() -> None:
    """s <- (1 - alpha) s + alpha r, starting from 0."""
    book = ScoreBook(alpha=0.5)
    assert book.score(ALICE) == 0.0
    assert book.update(ALICE, 1.0) == 0.5
    assert book.update(ALICE, 1.0) == 0.75
    assert book.update(ALICE, 0.0) == 0.375
    assert book.score(ALICE) == 0.375
    assert ScoreBook().alpha == DEFAULT_ALPHA == 0.1


def test_rewards_are_clamped() -> None:
    """Rewards outside [0, 1] are clamped and NaN counts as 0."""
    book = ScoreBook(alpha=1.0)
    assert book.update(ALICE, 3.0) == 1.0
    assert book.update(ALICE, -2.0) == 0.0
    assert book.update(ALICE, math.nan) == 0.0


def test_reregistration_starts_from_zero() -> None:
    """The same hotkey registered at a new block, or a new hotkey on the same uid, has no score."""
    book = ScoreBook(alpha=0.5)
    book.update(ALICE, 1.0)
    assert book.score(ALICE_AGAIN) == 0.0
    before = Metagraph(uids=[3], hotkeys=["alice"], registered_at=[10])
    after = Metagraph(uids=[3], hotkeys=["carol"], registered_at=[900])
    assert [book.score(i) for i in before.identities()] == [0.5]
    assert [book.score(i) for i in after.identities()] == [0.0]


def test_retain_forgets_deregistered() -> None:
    """retain drops identities no longer in the metagraph."""
    book = ScoreBook(alpha=0.5, scores={ALICE: 0.5, BOB: 0.25, ALICE_AGAIN: 0.1})
    assert book.retain([BOB, ALICE_AGAIN]) == 1
    assert book.items() == [(ALICE_AGAIN, 0.1), (BOB, 0.25)]
    assert len(book) == 2
    assert ALICE not in book
    assert list(book) == [ALICE_AGAIN, BOB]


def test_alpha_validation() -> None:
    """alpha must lie in (0, 1]."""
    for alpha in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ConfigError):
            ScoreBook(alpha=alpha)


def test_dict_round_trip_exact() -> None:
    """to_dict is a plain sorted structure that survives msgpack and from_dict."""
    book = ScoreBook(alpha=0.25, scores={BOB: 0.5, ALICE: 0.125})
    data = book.to_dict()
    assert data == {"alpha": 0.25, "scores": [["alice", 10, 0.125], ["bob", 20, 0.5]]}
    assert ScoreBook.from_dict(unpack(pack(data))) == book
    assert book != ScoreBook(alpha=0.25)


@pytest.mark.parametrize("data", [
    None, [], {"alpha": 0.5}, {"alpha": 0.0, "scores": []}, {"alpha": True, "scores": []},
    {"alpha": 0.5, "scores": [["alice", 10]]},
    {"alpha": 0.5, "scores": [["alice", -1, 0.5]]},
    {"alpha": 0.5, "scores": [["alice", 10, 1.5]]},
    {"alpha": 0.5, "scores": [[b"alice", 10, 0.5]]},
    {"alpha": 0.5, "scores": [["alice", True, 0.5]]},
    {"alpha": 0.5, "scores": [["alice", 10, 0.5], ["alice", 10, 0.25]]},
])
def test_from_dict_rejects_bad_data(data: Any) -> None:
    """Malformed score data is a ValidatorStateError (an EnsembleError)."""
    with pytest.raises(ValidatorStateError) as info:
        ScoreBook.from_dict(data)
    assert isinstance(info.value, EnsembleError)


@given(alpha=st.floats(0.01, 1.0),
       rewards=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats()), max_size=50))
def test_scores_stay_in_unit_interval(alpha: float, rewards: list[tuple[str, float]]) -> None:
    """Every score stays in [0, 1] and survives a dict round trip."""
    book = ScoreBook(alpha=alpha)
    for hotkey, value in rewards:
        assert 0.0 <= book.update(Identity(hotkey, 1), value) <= 1.0
    assert ScoreBook.from_dict(book.to_dict()) == book
