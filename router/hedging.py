"""When to hedge: send the same request to a second miner if the first is slow to start.

A hedge fires when the primary has produced no first token after a delay of
``multiplier x min(own p95, fleet p95)``, where *own p95* is that miner's recent p95 TTFT and
*fleet p95* the median of the per-miner p95s of the pool (``Shared.cold_p95``). Capping by the
fleet matters for a miner that turns into a straggler: its own p95 grows with its slow answers
(to the straggle itself), so hedging after its own p95 would come too late to help; the fleet's
p95 says how long a healthy miner would have taken. ``multiplier`` above 1 puts the hedge past
the p95 of a healthy miner (at 1.5, about the p99 of a lognormal TTFT with sigma 0.5), so a
healthy fleet hedges only about one request in a hundred instead of one in twenty, and the
retry budget is spent on miners that are really slow.

Hedges are extra attempts and draw on the shared :class:`router.budget.RetryBudget`; this module
only decides the delay. The network layer arms a timer for it, then takes a token with
``try_spend()`` when the timer fires (the budget may have run dry meanwhile: then no hedge), and
only if the hedge still has time to start before the request's deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """The hedge delay's scaling and bounds (seconds)."""

    enabled: bool = True
    # Past the healthy p95 (about the p99 of a lognormal TTFT, sigma 0.5): a healthy fleet
    # hedges ~1 % of requests, leaving the budget's 5 % target for stragglers.
    multiplier: float = 1.5
    # Cap the miner's own p95 by the fleet's median p95: a straggler's own p95 is inflated by
    # the very slowness a hedge should cut short. False: own p95 only.
    use_fleet: bool = True
    # Below 50 ms a hedge mostly duplicates work about to answer.
    min_delay_s: float = 0.05
    # Past 5 s waiting longer to hedge gains nothing; the TTFT deadline decides then.
    max_delay_s: float = 5.0
    # A miner without enough TTFT samples, in a fleet without any, is not hedged (None): no
    # evidence it is slow.
    cold_delay_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise ConfigError("multiplier must be a finite number > 0")
        if not 0 <= self.min_delay_s <= self.max_delay_s:
            raise ConfigError("need 0 <= min_delay_s <= max_delay_s")
        if self.cold_delay_s is not None and self.cold_delay_s < 0:
            raise ConfigError("cold_delay_s must be >= 0")


def hedge_delay(p95_ttft_s: float | None, *, ttft_timeout_s: float, budget_available: bool,
                has_spare: bool = True, fleet_p95_s: float | None = None,
                config: HedgeConfig = HedgeConfig()) -> float | None:
    """Seconds after the primary attempt starts at which to fire a hedge, or ``None``.

    Args:
        p95_ttft_s: the primary miner's p95 TTFT (``HealthTracker.p95_ttft``), or ``None``.
        ttft_timeout_s: the attempt's first-token timeout; a hedge not due before it is
            pointless (the timeout fails over instead).
        budget_available: ``RetryBudget.can_spend()`` now.
        has_spare: whether the plan holds another miner to hedge to.
        fleet_p95_s: the median p95 TTFT of the pool's measured miners, or ``None``.
        config: the hedging policy.

    Returns:
        ``clamp(multiplier * min(p95, fleet_p95), min_delay_s, max_delay_s)``, with whichever
        of the two p95s is known (only the miner's own when ``use_fleet`` is off),
        ``cold_delay_s`` when neither is; or ``None`` when hedging is off, the budget is empty,
        there is no spare, there is no cold delay, or the delay would not come before
        ``ttft_timeout_s``.
    """
    if not (config.enabled and budget_available and has_spare):
        return None
    known = [p for p in (p95_ttft_s, fleet_p95_s if config.use_fleet else None) if p is not None]
    if not known and p95_ttft_s is None and fleet_p95_s is not None:
        known = [fleet_p95_s]  # a cold miner: the fleet's p95 stands in for its own
    if known:
        delay = min(max(min(known) * config.multiplier, config.min_delay_s), config.max_delay_s)
    else:
        cold = config.cold_delay_s
        if cold is None:
            return None
        delay = cold
    return delay if delay < ttft_timeout_s else None
