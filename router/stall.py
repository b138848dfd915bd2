"""How long the router's own event loop stood still, so deadlines never blame a miner for it.

A first-token or inter-token deadline measures the *miner*. If the router's process stops
running for a while (a long garbage-collection pause, a starved CPU on a shared host, a
suspended VM), every attempt in flight passes its deadline at once although the miners'
tokens may be sitting in the socket buffers: without correction, one 0.6 s pause fails over
every request in flight, drains the retry budget and ejects healthy miners.

:class:`StallMeter` ticks every ``tick_s`` and books each tick that woke more than
``threshold_s`` late as a stall of its whole lateness. :meth:`StallMeter.stalled` is the
running total, including a stall still in progress (a deadline check may run before the
meter's own late tick does). Deadlines that measure a miner are pushed back by the stall time
that passed while they ran; the request's total deadline, which is the caller's, is not.
Ordinary scheduling jitter (ticks late by less than the threshold) is never booked, so on a
healthy loop deadlines fire at their value.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from protocol.clock import Clock
from protocol.errors import ConfigError


@dataclass(frozen=True, slots=True)
class StallConfig:
    """The meter's tick and what lateness counts as a stall (seconds)."""

    # 10 ms: a stall is seen within a tick of its end, at ~100 wake-ups a second (tens of
    # microseconds of CPU each).
    tick_s: float = 0.01
    # 25 ms late: a loop doing real work is late by a few ms per tick; a quarter of the 50 ms a
    # deadline may slip is a pause, not jitter.
    threshold_s: float = 0.025

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) and v > 0 for v in (self.tick_s, self.threshold_s)):
            raise ConfigError("stall tick_s and threshold_s must be finite numbers > 0")


class StallMeter:
    """Total seconds the loop stood still while :meth:`run` was running (0 before)."""

    def __init__(self, config: StallConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._booked = 0.0
        self._due: float | None = None   # when the running meter's next tick should wake
        #: Ticks so far, and how many of them booked a stall.
        self.ticks = 0
        self.stalls = 0

    def stalled(self) -> float:
        """Stall seconds so far, a stall in progress included. Never decreases."""
        if self._due is None:
            return self._booked
        late = self._clock.monotonic() - self._due
        return self._booked + (late if late > self.config.threshold_s else 0.0)

    async def run(self) -> None:
        """Tick until cancelled."""
        tick = self.config.tick_s
        self._due = self._clock.monotonic() + tick
        try:
            while True:
                await asyncio.sleep(tick)
                now = self._clock.monotonic()
                late = now - self._due
                self.ticks += 1
                if late > self.config.threshold_s:
                    self._booked += late
                    self.stalls += 1
                self._due = now + tick
        finally:
            self._booked = self.stalled()
            self._due = None
