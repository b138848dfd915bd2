"""Admission control (miners/admission.py): a concurrency limit, a stake-ordered bounded queue."""

from __future__ import annotations

import asyncio

import pytest

from miners.admission import Admission, AdmissionConfig
from protocol.errors import OverloadedError


async def settle(admission: Admission, depth: int) -> None:
    """Yield to the loop until ``depth`` requests are queued (bounded; no wall-clock sleep)."""
    for _ in range(1000):
        if admission.queue_depth == depth:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"queue depth stuck at {admission.queue_depth}, expected {depth}")


async def test_free_slots_are_granted_at_once() -> None:
    """Up to max_concurrent acquisitions succeed without queueing."""
    admission = Admission(AdmissionConfig(max_concurrent=3, max_queue=0))
    for _ in range(3):
        await admission.acquire(0.0)
    assert (admission.active, admission.queue_depth) == (3, 0)


async def test_full_queue_is_refused_with_retry_hint() -> None:
    """With every slot busy and the queue full, acquire raises a 503 with the retry hint."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=1, retry_after=2.5))
    await admission.acquire(0.0)
    waiter = asyncio.create_task(admission.acquire(0.0))
    await settle(admission, 1)
    with pytest.raises(OverloadedError) as info:
        await admission.acquire(100.0)
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "overloaded", 2.5)
    admission.release()
    await waiter
    assert (admission.active, admission.queue_depth) == (1, 0)


async def test_waiters_are_served_by_priority_then_arrival() -> None:
    """Queued work runs highest priority first, first come first served among equals."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=10))
    await admission.acquire(0.0)
    order: list[str] = []

    async def worker(name: str, priority: float) -> None:
        await admission.acquire(priority)
        order.append(name)
        admission.release()

    arrivals = [("a", 1.0), ("b", 5.0), ("c", 3.0), ("d", 5.0), ("e", 2.0), ("f", 0.0)]
    tasks = []
    for name, priority in arrivals:
        tasks.append(asyncio.create_task(worker(name, priority)))
        await settle(admission, len(tasks))
    admission.release()
    await asyncio.gather(*tasks)
    assert order == ["b", "d", "c", "e", "a", "f"]
    assert (admission.active, admission.queue_depth) == (0, 0)


async def test_new_arrival_does_not_jump_the_queue() -> None:
    """While anyone waits, a newcomer queues even if a slot is being handed over."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=10))
    await admission.acquire(0.0)
    first = asyncio.create_task(admission.acquire(1.0))
    await settle(admission, 1)
    admission.release()  # the slot goes to `first`, which has not resumed yet
    late = asyncio.create_task(admission.acquire(100.0))
    await first
    await settle(admission, 1)
    assert (admission.active, late.done()) == (1, False)
    admission.release()
    await late
    admission.release()
    assert (admission.active, admission.queue_depth) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """Cancelling a queued request frees its queue place and leaves no entry behind."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=2))
    await admission.acquire(0.0)
    doomed = asyncio.create_task(admission.acquire(9.0))
    kept = asyncio.create_task(admission.acquire(1.0))
    await settle(admission, 2)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert admission.queue_depth == 1
    assert len(admission._heap) == 1  # bounded memory: the dead entry is gone at once
    admission.release()
    await kept
    assert (admission.active, admission.queue_depth) == (1, 0)


async def test_many_cancelled_waiters_keep_memory_bounded() -> None:
    """A thousand waiters cancelled while a slot is stuck leave no entries behind."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=4))
    await admission.acquire(0.0)
    for _ in range(250):
        batch = [asyncio.create_task(admission.acquire(float(i))) for i in range(4)]
        await settle(admission, 4)
        for task in batch:
            task.cancel()
        await asyncio.gather(*batch, return_exceptions=True)
    assert (admission.queue_depth, len(admission._heap), admission.active) == (0, 0, 1)


async def test_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """If a waiter is cancelled right after being handed a slot, the next waiter gets it."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=2))
    await admission.acquire(0.0)
    first = asyncio.create_task(admission.acquire(2.0))
    second = asyncio.create_task(admission.acquire(1.0))
    await settle(admission, 2)
    admission.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert (admission.active, admission.queue_depth) == (1, 0)
    admission.release()
    assert admission.active == 0


async def test_release_with_no_waiters_frees_the_slot() -> None:
    """Releasing with an empty queue returns the slot; the next acquire is immediate."""
    admission = Admission(AdmissionConfig(max_concurrent=1, max_queue=0))
    await admission.acquire(0.0)
    admission.release()
    assert admission.active == 0
    await admission.acquire(0.0)
    assert admission.active == 1
