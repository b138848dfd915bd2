"""Per-caller token buckets (protocol/ratelimit.py), with time passed in by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import RateLimitedError
from protocol.ratelimit import RateLimitConfig, RateLimiter

ALICE = b"A" * 32
BOB = b"B" * 32


def retry_after(limiter: RateLimiter, caller: bytes, now: float) -> float:
    """Return the retry_after of the RateLimitedError ``acquire`` raises (fails if it passes)."""
    with pytest.raises(RateLimitedError) as info:
        limiter.acquire(caller, now)
    assert info.value.status == 429
    assert info.value.code == "rate_limited"
    assert info.value.retry_after is not None
    return info.value.retry_after


def test_burst_then_refused_with_exact_retry_after() -> None:
    """A fresh caller gets ``burst`` requests at once; the next waits 1/rate seconds."""
    limiter = RateLimiter(RateLimitConfig(rate=4.0, burst=3.0))
    for _ in range(3):
        limiter.acquire(ALICE, 100.0)
    assert retry_after(limiter, ALICE, 100.0) == 0.25


def test_refill_at_rate() -> None:
    """Tokens refill at ``rate`` per second: after 0.5 s at 4/s, two more requests pass."""
    limiter = RateLimiter(RateLimitConfig(rate=4.0, burst=3.0))
    for _ in range(3):
        limiter.acquire(ALICE, 100.0)
    limiter.acquire(ALICE, 100.5)
    limiter.acquire(ALICE, 100.5)
    assert retry_after(limiter, ALICE, 100.5) == 0.25


def test_refill_is_capped_at_burst() -> None:
    """A long idle period refills to ``burst``, not more."""
    limiter = RateLimiter(RateLimitConfig(rate=100.0, burst=2.0))
    limiter.acquire(ALICE, 0.0)
    for _ in range(2):
        limiter.acquire(ALICE, 1_000.0)
    assert retry_after(limiter, ALICE, 1_000.0) == 0.01


def test_partial_token_retry_after() -> None:
    """With half a token left the wait is the time to earn the other half."""
    limiter = RateLimiter(RateLimitConfig(rate=2.0, burst=1.0))
    limiter.acquire(ALICE, 0.0)
    assert retry_after(limiter, ALICE, 0.25) == 0.25


def test_callers_are_independent() -> None:
    """Alice's empty bucket does not affect Bob."""
    limiter = RateLimiter(RateLimitConfig(rate=1.0, burst=1.0))
    limiter.acquire(ALICE, 0.0)
    retry_after(limiter, ALICE, 0.0)
    limiter.acquire(BOB, 0.0)


def test_clock_going_backwards_adds_no_tokens() -> None:
    """A non-monotonic ``now`` never refills a bucket."""
    limiter = RateLimiter(RateLimitConfig(rate=1.0, burst=1.0))
    limiter.acquire(ALICE, 10.0)
    assert retry_after(limiter, ALICE, 5.0) == 1.0


def test_zero_rate_suggests_an_hour() -> None:
    """With rate 0 an empty bucket never refills and the hint is an hour."""
    limiter = RateLimiter(RateLimitConfig(rate=0.0, burst=1.0))
    limiter.acquire(ALICE, 0.0)
    assert retry_after(limiter, ALICE, 1e9) == 3600.0


def test_memory_is_bounded_and_least_recent_forgotten() -> None:
    """At most max_callers buckets are kept; the least recently seen is forgotten (full again)."""
    limiter = RateLimiter(RateLimitConfig(rate=1.0, burst=1.0, max_callers=2))
    limiter.acquire(ALICE, 0.0)
    limiter.acquire(BOB, 0.0)
    retry_after(limiter, ALICE, 0.0)  # touching Alice makes Bob the least recent
    limiter.acquire(b"C" * 32, 0.0)
    assert len(limiter) == 2
    retry_after(limiter, ALICE, 0.0)  # Alice was kept, still empty
    limiter.acquire(BOB, 0.0)  # Bob was forgotten: a full bucket again


@given(st.lists(st.tuples(st.sampled_from([ALICE, BOB]), st.floats(0, 2)), max_size=80))
def test_never_more_than_burst_plus_refill(steps: list[tuple[bytes, float]]) -> None:
    """Accepted requests per caller never exceed burst + rate x elapsed time."""
    config = RateLimitConfig(rate=3.0, burst=5.0)
    limiter = RateLimiter(config)
    now = 0.0
    accepted = {ALICE: 0, BOB: 0}
    for caller, dt in steps:
        now += dt
        try:
            limiter.acquire(caller, now)
        except RateLimitedError as exc:
            hint = exc.retry_after
        else:
            hint = None
            accepted[caller] += 1
        assert hint is None or 0 < hint <= 1 / config.rate
        assert accepted[caller] <= config.burst + config.rate * now + 1e-9
