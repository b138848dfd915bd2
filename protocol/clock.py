"""The clock, injected wherever time matters so tests can control it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for signatures and freshness; monotonic time for durations."""

    def now_ms(self) -> int:
        """Unix time in integer milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Unix time in integer milliseconds."""
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock tests move by hand (``advance``); starts at a fixed, realistic instant."""

    def __init__(self, start_ms: int = 1_790_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        """Current manual wall time."""
        return self._ms

    def monotonic(self) -> float:
        """Current manual monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._ms += int(seconds * 1000)
        self._mono += seconds
