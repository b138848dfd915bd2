"""A router-wide retry budget: retries and hedges are a bounded fraction of primary requests.

Retry storms come from every layer retrying independently (a gateway was seen making up to
twelve upstream attempts per request). Here every *extra* attempt, whether a failover retry or
a hedge, must take a token from one budget shared by all requests: over the last ``window_s``
seconds, extra attempts may not exceed ``ratio`` times the primary requests plus
``min_extra`` (so a cold or quiet router can still retry). Under an outage the extra load
is therefore at most ``ratio`` of the real load, whatever the per-request retry policy says.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from protocol.clock import Clock
from protocol.errors import ConfigError

# Absorbs float rounding in ratio * primaries (0.1 * 30 is 3.0000000000000004) without ever
# granting a whole extra token.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """The budget's ratio, floor and window."""

    # 10 %: Finagle's and Envoy's budgets sit at 10-20 %; an outage then adds at most a tenth
    # to the load on the miners still standing.
    ratio: float = 0.1
    # Two per window: a cold router can retry one request and hedge one.
    min_extra: int = 2
    # Ten seconds: long enough to smooth bursts, short enough to recover right after them.
    window_s: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio >= 0):
            raise ConfigError("ratio must be a finite number >= 0")
        if self.min_extra < 0:
            raise ConfigError("min_extra must be >= 0")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ConfigError("window_s must be a finite number > 0")


class RetryBudget:
    """Counts primaries and extra attempts over a sliding window; grants extras within budget.

    The window is ``(now - window_s, now]`` on the clock's monotonic time. Memory is one float
    per event in the window (at 10 000 requests/s and 10 s, about 100 000 floats).
    Guarantee: at every grant, extras in the window (this one included) are at most
    ``ratio * primaries in the window + min_extra``.
    """

    def __init__(self, config: BudgetConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._primaries: deque[float] = deque()
        self._extras: deque[float] = deque()

    def record_primary(self) -> None:
        """One request entered the router (call once per request, before its first attempt)."""
        self._primaries.append(self._clock.monotonic())

    def try_spend(self, *, keep: float = 0.0) -> bool:
        """Take one token for a retry or hedge; ``False`` (nothing taken) if none is left.

        ``keep`` (0..1) is the share of the window's whole budget that must stay untouched
        after this grant: hedges pass 0.5 so they can never starve failover of its tokens.
        """
        now = self._expire()
        reserve = keep * (self.config.ratio * len(self._primaries) + self.config.min_extra)
        if self._allowance() - reserve < 1:
            return False
        self._extras.append(now)
        return True

    def can_spend(self) -> bool:
        """Whether :meth:`try_spend` would succeed now (takes nothing)."""
        self._expire()
        return self._allowance() >= 1

    def available(self) -> int:
        """How many extra attempts could be granted now."""
        self._expire()
        return max(math.floor(self._allowance()), 0)

    @property
    def primaries(self) -> int:
        """Primary requests in the window."""
        self._expire()
        return len(self._primaries)

    @property
    def extras(self) -> int:
        """Extra attempts granted in the window."""
        self._expire()
        return len(self._extras)

    def _allowance(self) -> float:
        cfg = self.config
        return cfg.ratio * len(self._primaries) + cfg.min_extra - len(self._extras) + _EPS

    def _expire(self) -> float:
        now = self._clock.monotonic()
        horizon = now - self.config.window_s
        for events in (self._primaries, self._extras):
            while events and events[0] <= horizon:
                events.popleft()
        return now
