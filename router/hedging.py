"""When to hedge: send the same request to a second miner if the first is slow to start.

A hedge fires when the primary has produced no first token after a delay taken from that
miner's own recent p95 TTFT, so roughly one request in twenty hedges while the miner behaves as
usual, and nearly every request that has hit its tail does. Hedges are extra attempts and
draw on the shared :class:`router.budget.RetryBudget`; this module only decides the delay.
The network layer arms a timer for it, then takes a token with ``try_spend()`` when the timer
fires (the budget may have run dry meanwhile: then no hedge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """The hedge delay's scaling and bounds (seconds)."""

    enabled: bool = True
    # At the miner's own p95: a hedge is the exception, sent when this request is in the tail.
    multiplier: float = 1.0
    # Below 50 ms a hedge mostly duplicates work about to answer.
    min_delay_s: float = 0.05
    # Past 5 s waiting longer to hedge gains nothing; the TTFT deadline decides then.
    max_delay_s: float = 5.0
    # A miner without enough TTFT samples is not hedged (None): no evidence it is slow.
    cold_delay_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise ConfigError("multiplier must be a finite number > 0")
        if not 0 <= self.min_delay_s <= self.max_delay_s:
            raise ConfigError("need 0 <= min_delay_s <= max_delay_s")
        if self.cold_delay_s is not None and self.cold_delay_s < 0:
            raise ConfigError("cold_delay_s must be >= 0")


def hedge_delay(p95_ttft_s: float | None, *, ttft_timeout_s: float, budget_available: bool,
                has_spare: bool = True, config: HedgeConfig = HedgeConfig()) -> float | None:
    """Seconds after the primary attempt starts at which to fire a hedge, or ``None``.

    Args:
        p95_ttft_s: the primary miner's p95 TTFT (``HealthTracker.p95_ttft``), or ``None``.
        ttft_timeout_s: the attempt's first-token timeout; a hedge not due before it is
            pointless (the timeout fails over instead).
        budget_available: ``RetryBudget.can_spend()`` now.
        has_spare: whether the plan holds another miner to hedge to.
        config: the hedging policy.

    Returns:
        ``clamp(p95 * multiplier, min_delay_s, max_delay_s)`` (``cold_delay_s`` without a p95),
        or ``None`` when hedging is off, the budget is empty, there is no spare, there is no
        cold delay, or the delay would not come before ``ttft_timeout_s``.
    """
    if not (config.enabled and budget_available and has_spare):
        return None
    if p95_ttft_s is None:
        delay = config.cold_delay_s
        if delay is None:
            return None
    else:
        delay = min(max(p95_ttft_s * config.multiplier, config.min_delay_s), config.max_delay_s)
    return delay if delay < ttft_timeout_s else None
