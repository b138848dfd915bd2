"""Admission control: a concurrency limit with a priority queue that really orders waiting work.

Waiting requests are served highest priority first (the caller's stake), first come first
served among equals. The queue is bounded: when it is full a new request is refused at once
(HTTP 503 with a retry hint) rather than piling up work nobody will wait for.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass

from protocol.errors import OverloadedError


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """``max_concurrent`` requests run at once; at most ``max_queue`` wait for a slot."""

    # Two workers per core keeps the event loop and the executor busy without oversubscribing
    # a small machine; model miners set this to their batch size.
    max_concurrent: int = 8
    max_queue: int = 256
    #: Seconds suggested to a refused caller before it retries.
    retry_after: float = 1.0


class Admission:
    """Grants execution slots; ``await acquire(priority)`` then ``release()`` when done."""

    def __init__(self, config: AdmissionConfig = AdmissionConfig()) -> None:
        self._config = config
        self._active = 0
        self._waiting = 0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def active(self) -> int:
        """Requests currently holding a slot."""
        return self._active

    @property
    def queue_depth(self) -> int:
        """Requests currently waiting for a slot."""
        return self._waiting

    def try_acquire(self) -> bool:
        """Take a slot without waiting if one is free and nobody is queued."""
        if self._active < self._config.max_concurrent and self._waiting == 0:
            self._active += 1
            return True
        return False

    async def acquire(self, priority: float) -> None:
        """Wait for a slot; higher ``priority`` is served first.

        Raises:
            OverloadedError: the queue is full.
            asyncio.CancelledError: the waiter was cancelled (e.g. its deadline); no slot is held.
        """
        if self._active < self._config.max_concurrent and self._waiting == 0:
            self._active += 1
            return
        if self._waiting >= self._config.max_queue:
            raise OverloadedError("miner is at capacity; retry later",
                                  retry_after=self._config.retry_after)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (-priority, next(self._seq), future))
        self._waiting += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self.release()
            else:
                # Drop our entry now rather than when a release pops it: under a stuck handler and
                # a flood of short deadlines, dead entries would otherwise pile up without bound.
                future.cancel()
                self._heap = [entry for entry in self._heap if entry[2] is not future]
                heapq.heapify(self._heap)
                self._waiting -= 1
            raise

    def release(self) -> None:
        """Free a slot, handing it directly to the best waiter if there is one."""
        while self._heap:
            _, _, future = heapq.heappop(self._heap)
            if future.cancelled():
                continue  # its waiter was cancelled; it updates the count when it resumes
            self._waiting -= 1
            future.set_result(None)
            return
        self._active -= 1
