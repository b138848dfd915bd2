"""Freshness and replay protection with bounded memory (SPEC.md §3.4). Pure: time is passed in.

A request is fresh when its timestamp lies within ``[now - past_ms, now + future_ms]``. A fresh,
authenticated request is then remembered by (caller, nonce) until it can no longer be fresh,
so any duplicate inside the window is rejected. Nonces are random, not counters: concurrent
requests from one caller may arrive in any order and are all accepted.

Memory is bounded by ``capacity``. When a flood of unique nonces fills it, the entry with the
oldest timestamp is evicted and the *horizon* rises to that timestamp: from then on requests
stamped at or before the horizon are rejected as stale. A replay therefore can never slip
through an eviction; the price under attack is a shorter effective window, never a hole.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from protocol.errors import ReplayError

# 30 s each way tolerates ordinary NTP-less clock drift and slow links while keeping the
# remembered set small (capacity / window = sustainable unique requests per second).
DEFAULT_PAST_MS = 30_000
DEFAULT_FUTURE_MS = 30_000
DEFAULT_CAPACITY = 200_000


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Window and memory bound of a :class:`ReplayGuard`."""

    past_ms: int = DEFAULT_PAST_MS
    future_ms: int = DEFAULT_FUTURE_MS
    capacity: int = DEFAULT_CAPACITY


class ReplayGuard:
    """Remembers recently seen (caller, nonce) pairs; rejects stale, future and repeated ones."""

    def __init__(self, config: ReplayConfig = ReplayConfig()) -> None:
        self._config = config
        self._seen: dict[tuple[bytes, bytes], int] = {}
        self._heap: list[tuple[int, bytes, bytes]] = []
        self._horizon = -1

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def horizon_ms(self) -> int:
        """Timestamps at or below this are rejected because their nonces may be forgotten."""
        return self._horizon

    def check_fresh(self, timestamp_ms: int, now_ms: int) -> None:
        """Reject a timestamp outside the window or at/below the horizon (cheap, header-only).

        Raises:
            ReplayError: stale (code ``stale``) or from the future (code ``future``).
        """
        if timestamp_ms > now_ms + self._config.future_ms:
            raise ReplayError(f"timestamp is {timestamp_ms - now_ms} ms in the future; "
                              "check the caller's clock", code="future")
        if timestamp_ms < now_ms - self._config.past_ms or timestamp_ms <= self._horizon:
            raise ReplayError("timestamp is too old; send a fresh request", code="stale")

    def check(self, caller: bytes, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Reject a request that :meth:`remember` would reject, without remembering it.

        Lets a receiver refuse a replay before charging the caller's rate limit, and charge the
        rate limit before spending memory on the request.

        Raises:
            ReplayError: stale/future (see :meth:`check_fresh`) or duplicate (code ``replay``).
        """
        self._expire(now_ms)
        self.check_fresh(timestamp_ms, now_ms)
        if (caller, nonce) in self._seen:
            raise ReplayError("this request was already received (duplicate nonce)",
                              code="replay")

    def remember(self, caller: bytes, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Record an authenticated request, rejecting it if it was seen before.

        Call only after the signature verified, so strangers cannot fill the memory.

        Raises:
            ReplayError: stale/future (see :meth:`check_fresh`) or duplicate (code ``replay``).
        """
        self.check(caller, nonce, timestamp_ms, now_ms)
        key = (caller, nonce)
        self._seen[key] = timestamp_ms
        heapq.heappush(self._heap, (timestamp_ms, caller, nonce))
        while len(self._seen) > self._config.capacity:
            ts, old_caller, old_nonce = heapq.heappop(self._heap)
            del self._seen[(old_caller, old_nonce)]
            self._horizon = max(self._horizon, ts)

    def _expire(self, now_ms: int) -> None:
        """Forget entries whose timestamps can no longer pass the freshness check.

        The horizon follows them: were the wall clock to step back, a forgotten request would
        otherwise look fresh again, and its replay would pass.
        """
        cutoff = now_ms - self._config.past_ms
        heap = self._heap
        while heap and heap[0][0] < cutoff:
            timestamp, caller, nonce = heapq.heappop(heap)
            del self._seen[(caller, nonce)]
            self._horizon = max(self._horizon, timestamp)
