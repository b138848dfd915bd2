"""Deadlines of one routed request: first token, between tokens, and in total.

Times are absolute instants on the clock's ``monotonic()`` scale, so every attempt of a request
(failovers, hedges) shares one total deadline while each gets its own first-token deadline.
The network layer turns them into ``asyncio.timeout`` values with the ``*_timeout`` methods.
The first-token deadline adapts to the miner: ``ttft_p95_multiplier`` times its own p95 TTFT,
kept within ``[min_ttft_s, ttft_s]``, so a miner that is stuck fails over in a few of its usual
first-token times, not after a fixed, generous limit that in practice never fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.errors import ConfigError
from router.errors import RouterInputError


@dataclass(frozen=True, slots=True)
class DeadlineConfig:
    """Deadline lengths in seconds."""

    # 10 s: a cold model on a busy GPU still starts within it; anything slower is failed over.
    ttft_s: float = 10.0
    # 1 s: a miner that starts adapting from its p95 is never held to less than this.
    min_ttft_s: float = 1.0
    # Three times the miner's own p95 TTFT; None: always ``ttft_s``.
    ttft_p95_multiplier: float | None = 3.0
    # 5 s between tokens: a healthy stream emits many per second; a pause this long is a stall.
    inter_token_s: float = 5.0
    # 120 s in total: a long answer from a small model.
    total_s: float = 120.0
    # An attempt with less than this left would only waste a miner's work.
    min_attempt_s: float = 0.5

    def __post_init__(self) -> None:
        values = (self.ttft_s, self.min_ttft_s, self.inter_token_s, self.total_s,
                  self.min_attempt_s)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ConfigError("deadline lengths must be finite numbers > 0")
        if self.min_ttft_s > self.ttft_s:
            raise ConfigError("min_ttft_s must not exceed ttft_s")
        if self.ttft_p95_multiplier is not None and not self.ttft_p95_multiplier > 0:
            raise ConfigError("ttft_p95_multiplier must be > 0")


@dataclass(frozen=True, slots=True)
class AttemptDeadlines:
    """One attempt's deadlines (monotonic instants) and its inter-token limit."""

    ttft_at: float
    inter_token_s: float
    total_at: float

    def ttft_timeout(self, now: float) -> float:
        """Seconds left for the first token (0 when passed)."""
        return max(self.ttft_at - now, 0.0)

    def next_token_timeout(self, now: float) -> float:
        """Seconds to wait for the next token: the inter-token limit, cut by the total."""
        return max(min(self.inter_token_s, self.total_at - now), 0.0)

    def total_timeout(self, now: float) -> float:
        """Seconds left for the whole request (0 when passed)."""
        return max(self.total_at - now, 0.0)


@dataclass(frozen=True, slots=True)
class RequestDeadlines:
    """The deadlines of a request started at ``start``; make attempts with :meth:`attempt`."""

    start: float
    total_at: float
    config: DeadlineConfig

    def remaining(self, now: float) -> float:
        """Seconds left before the total deadline (0 when passed)."""
        return max(self.total_at - now, 0.0)

    def attempt(self, now: float, p95_ttft_s: float | None = None) -> AttemptDeadlines | None:
        """Deadlines of an attempt starting ``now`` on a miner with that p95 TTFT.

        Returns ``None`` when less than ``min_attempt_s`` is left: do not start it.
        """
        if self.remaining(now) < self.config.min_attempt_s:
            return None
        ttft = ttft_limit(self.config, p95_ttft_s)
        return AttemptDeadlines(min(now + ttft, self.total_at), self.config.inter_token_s,
                                self.total_at)


def ttft_limit(config: DeadlineConfig, p95_ttft_s: float | None) -> float:
    """The first-token limit for a miner: ``multiplier * p95`` within ``[min_ttft_s, ttft_s]``."""
    if p95_ttft_s is None or config.ttft_p95_multiplier is None:
        return config.ttft_s
    return min(max(p95_ttft_s * config.ttft_p95_multiplier, config.min_ttft_s), config.ttft_s)


def request_deadlines(config: DeadlineConfig, now: float,
                      requested_s: float | None = None) -> RequestDeadlines:
    """Deadlines for a request starting ``now``; ``requested_s`` (the caller's own timeout)
    shortens the total, never lengthens it.

    Raises:
        RouterInputError: ``requested_s`` is not a finite number > 0.
    """
    total = config.total_s
    if requested_s is not None:
        if not (math.isfinite(requested_s) and requested_s > 0):
            raise RouterInputError(f"requested timeout must be > 0, got {requested_s!r}")
        total = min(total, requested_s)
    return RequestDeadlines(now, now + total, config)
