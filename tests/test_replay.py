"""Freshness and replay memory (protocol/replay.py): exact window edges and bounded memory."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ReplayError
from protocol.replay import ReplayConfig, ReplayGuard

NOW = 1_790_000_000_000
ALICE = b"A" * 32
BOB = b"B" * 32


def code_of(guard: ReplayGuard, caller: bytes, nonce: bytes, ts: int, now: int = NOW) -> str:
    """Return the ReplayError code ``remember`` raises (fails if it accepts)."""
    with pytest.raises(ReplayError) as info:
        guard.remember(caller, nonce, ts, now)
    return info.value.code


def nonce(i: int) -> bytes:
    """The i-th test nonce (16 bytes)."""
    return i.to_bytes(16, "big")


@pytest.mark.parametrize(("ts", "code"), [
    (NOW - 30_000, None), (NOW - 30_001, "stale"), (NOW + 30_000, None), (NOW + 30_001, "future"),
    (NOW, None), (0, "stale"), (2**64 - 1, "future"),
])
def test_window_edges(ts: int, code: str | None) -> None:
    """The window is [now - past, now + future], both ends included."""
    guard = ReplayGuard()
    if code is None:
        guard.check_fresh(ts, NOW)
        guard.remember(ALICE, nonce(1), ts, NOW)
        assert len(guard) == 1
    else:
        with pytest.raises(ReplayError) as info:
            guard.check_fresh(ts, NOW)
        assert info.value.code == code
        assert code_of(guard, ALICE, nonce(1), ts) == code
        assert len(guard) == 0


def test_duplicate_nonce_is_a_replay() -> None:
    """The same (caller, nonce) twice within the window is refused with code replay."""
    guard = ReplayGuard()
    guard.remember(ALICE, nonce(1), NOW, NOW)
    assert code_of(guard, ALICE, nonce(1), NOW, NOW + 10) == "replay"
    assert code_of(guard, ALICE, nonce(1), NOW + 5, NOW + 10) == "replay"


def test_same_nonce_from_another_caller_is_fine() -> None:
    """Nonces are per caller: Bob may use the nonce Alice used."""
    guard = ReplayGuard()
    guard.remember(ALICE, nonce(1), NOW, NOW)
    guard.remember(BOB, nonce(1), NOW, NOW)
    assert len(guard) == 2


def test_out_of_order_timestamps_are_all_accepted() -> None:
    """Fifty requests stamped in one order and received shuffled are all accepted."""
    guard = ReplayGuard()
    stamps = [(NOW + i, nonce(i)) for i in range(50)]
    random.Random(7).shuffle(stamps)
    for ts, n in stamps:
        guard.remember(ALICE, n, ts, NOW + 50)
    assert len(guard) == 50


def test_entries_expire_when_they_leave_the_window() -> None:
    """An entry is forgotten once its timestamp is older than now - past; a resend is then stale."""
    guard = ReplayGuard(ReplayConfig(past_ms=1000, future_ms=1000, capacity=100))
    guard.remember(ALICE, nonce(1), NOW, NOW)
    guard.remember(ALICE, nonce(2), NOW + 500, NOW + 1000)
    assert len(guard) == 2
    guard.remember(ALICE, nonce(3), NOW + 1001, NOW + 1001)  # now - past = NOW + 1: nonce 1 goes
    assert len(guard) == 2
    assert code_of(guard, ALICE, nonce(1), NOW, NOW + 1001) == "stale"
    assert guard.horizon_ms == NOW  # the horizon follows what was forgotten


def test_a_clock_stepping_back_does_not_revive_a_forgotten_request() -> None:
    """Once expired, a request stays refused even if the wall clock then steps back (where its
    timestamp would look fresh again)."""
    guard = ReplayGuard(ReplayConfig(past_ms=1000, future_ms=1000, capacity=100))
    guard.remember(ALICE, nonce(1), NOW, NOW)
    guard.remember(ALICE, nonce(2), NOW + 1001, NOW + 1001)  # nonce 1 expires
    assert code_of(guard, ALICE, nonce(1), NOW, NOW + 900) == "stale"  # clock stepped back 101 ms
    guard.remember(ALICE, nonce(3), NOW + 1, NOW + 900)  # newer requests still pass


def test_check_refuses_like_remember_without_remembering() -> None:
    """``check`` raises what ``remember`` would and stores nothing."""
    guard = ReplayGuard(ReplayConfig(past_ms=1000, future_ms=1000, capacity=100))
    guard.check(ALICE, nonce(1), NOW, NOW)
    assert len(guard) == 0
    guard.remember(ALICE, nonce(1), NOW, NOW)
    with pytest.raises(ReplayError, match="duplicate"):
        guard.check(ALICE, nonce(1), NOW, NOW)


def test_flood_is_bounded_and_evicted_nonces_stay_rejected() -> None:
    """A flood of unique nonces never grows memory past capacity; evicted nonces replay as stale."""
    guard = ReplayGuard(ReplayConfig(capacity=8))
    for i in range(1000):
        guard.remember(ALICE, nonce(i), NOW + i, NOW + i)
        assert len(guard) <= 8
    assert len(guard) == 8
    assert guard.horizon_ms == NOW + 991
    assert code_of(guard, ALICE, nonce(0), NOW, NOW + 1000) == "stale"
    assert code_of(guard, ALICE, nonce(991), NOW + 991, NOW + 1000) == "stale"
    assert code_of(guard, ALICE, nonce(992), NOW + 992, NOW + 1000) == "replay"
    guard.remember(ALICE, nonce(5000), NOW + 992, NOW + 1000)  # above the horizon, new: accepted


def test_newest_entry_evicted_first_when_it_is_the_oldest() -> None:
    """A request older than everything remembered is accepted once, then evicted and stale."""
    guard = ReplayGuard(ReplayConfig(capacity=2))
    guard.remember(ALICE, nonce(1), NOW + 10, NOW + 10)
    guard.remember(ALICE, nonce(2), NOW + 20, NOW + 20)
    guard.remember(ALICE, nonce(3), NOW + 5, NOW + 20)
    assert len(guard) == 2
    assert guard.horizon_ms == NOW + 5
    assert code_of(guard, ALICE, nonce(3), NOW + 5, NOW + 20) == "stale"


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 60)),
                max_size=120), st.integers(1, 6))
def test_no_replay_ever_slips_through(events: list[tuple[int, int, int]], capacity: int) -> None:
    """Memory stays within capacity and no (caller, nonce, timestamp) is ever accepted twice."""
    guard = ReplayGuard(ReplayConfig(past_ms=20, future_ms=20, capacity=capacity))
    accepted: set[tuple[bytes, bytes, int]] = set()
    now = NOW
    for caller_id, nonce_id, ts_offset in events:
        now += 1
        key = (bytes([caller_id]) * 32, nonce(nonce_id), NOW + ts_offset)
        try:
            guard.remember(*key, now)
        except ReplayError:
            pass
        else:
            assert key not in accepted
            accepted.add(key)
        assert len(guard) <= capacity
