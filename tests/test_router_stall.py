"""The stall meter: pauses of the router's own loop, measured on a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from protocol.clock import ManualClock, SystemClock
from protocol.errors import ConfigError
from router.stall import StallConfig, StallMeter

CONFIG = StallConfig(tick_s=0.001, threshold_s=0.025)


async def next_tick(meter: StallMeter) -> None:
    """Wait (bounded) until the meter has ticked once more."""
    seen = meter.ticks
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if meter.ticks > seen:
            return
    raise AssertionError("the meter did not tick")


@asynccontextmanager
async def running(meter: StallMeter) -> AsyncIterator[None]:
    """Run the meter (it has ticked once on entry); cancel it on leaving."""
    task = asyncio.create_task(meter.run())
    try:
        await next_tick(meter)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_nothing_is_booked_while_the_meter_is_not_running() -> None:
    clock = ManualClock()
    meter = StallMeter(CONFIG, clock)
    clock.advance(5.0)
    assert meter.stalled() == 0.0


async def test_a_pause_counts_while_it_lasts_and_is_booked_at_the_next_tick() -> None:
    clock = ManualClock()
    meter = StallMeter(CONFIG, clock)
    async with running(meter):
        clock.advance(0.5)
        # Seen before the meter's own (late) tick runs: a deadline check may come first.
        in_progress = meter.stalled()
        assert 0.49 <= in_progress <= 0.5
        await next_tick(meter)
        assert meter.stalls == 1
        assert meter.stalled() == pytest.approx(in_progress)


async def test_jitter_under_the_threshold_is_never_booked() -> None:
    clock = ManualClock()
    meter = StallMeter(CONFIG, clock)
    async with running(meter):
        for _ in range(5):
            clock.advance(CONFIG.threshold_s)  # late by threshold - tick: not a stall
            assert meter.stalled() == 0.0
            await next_tick(meter)
        assert meter.stalls == 0
        assert meter.stalled() == 0.0


async def test_the_total_never_decreases_and_stays_after_the_meter_stops() -> None:
    clock = ManualClock()
    meter = StallMeter(CONFIG, clock)
    readings = []
    async with running(meter):
        for pause in (0.1, 0.0, 0.3, 0.05):
            clock.advance(pause)
            readings.append(meter.stalled())
            await next_tick(meter)
            readings.append(meter.stalled())
        clock.advance(1.0)
        readings.append(meter.stalled())  # a pause in progress when the meter stops...
    assert readings == sorted(readings)
    assert meter.stalled() == pytest.approx(readings[-1])  # ...is kept,
    clock.advance(10.0)
    assert meter.stalled() == pytest.approx(readings[-1])  # and nothing grows after.


async def test_a_real_blocked_loop_is_measured() -> None:
    """The real clock: blocking the loop for 0.3 s books at least 0.3 s of stall."""
    meter = StallMeter(StallConfig(), SystemClock())
    async with running(meter):
        before = meter.stalled()
        time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop is the point
        await next_tick(meter)
        assert meter.stalled() - before >= 0.3 - StallConfig().tick_s


@pytest.mark.parametrize("field", ["tick_s", "threshold_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_config_is_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        StallConfig(**{field: value})
