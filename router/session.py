"""One answer from the network: attempts, failover, hedging, deadlines and resume.

A :class:`Session` turns one planned miner into one complete, verified answer or a typed error.
It streams every attempt (``generate_stream``), so the first token is observable and every
deadline can fire on time whatever the miner does:

* before the first token, a failed or silent attempt (no first token by its TTFT deadline) is
  replaced by the next miner in score order: the caller sees nothing of it;
* a hedge goes to the next miner when the primary has sent nothing after ``multiplier x
  min(its own p95 TTFT, the fleet's median p95)``; the first to send a token wins and the other
  is cancelled;
* after the first token, a stall (no token within the inter-token limit), a cut stream, or a
  miner that stops with ``cancelled`` is resumed on another miner from the text delivered so far
  (:func:`router.requests.continuation`), or ends with :class:`StreamInterruptedError`;
* the request's total deadline ends everything with :class:`UpstreamTimeoutError`.

First-token, inter-token and hedge deadlines move back by the time the router's own event loop
stood still while they ran (:mod:`router.stall`): a pause of the router is not the miners'
fault. The total deadline is the caller's and never moves.

Every extra attempt (failover, hedge, resume) takes a token from the router-wide retry budget
and counts towards ``1 + max_failover`` attempts per answer. Outcomes feed the health tracker
and the circuit breaker as they happen. Attempts run as tasks that put their chunks on one
queue; the session waits on that queue with a timeout equal to the nearest deadline, so a timer
is never late by more than the event loop's own latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from protocol.client import Client, Target, Timeouts
from protocol.clock import Clock
from protocol.envelope import Receipt
from protocol.errors import QueryError, QueryTimeout, RemoteError, StreamIntegrityError
from protocol.messages import ROUTE_GENERATE_STREAM, GenerateChunk, GenerateRequest
from router.breaker import CircuitBreaker, Permit
from router.budget import RetryBudget
from router.candidates import Candidate, CandidatePool, Requirements
from router.config import RouterConfig
from router.deadlines import AttemptDeadlines, RequestDeadlines, ttft_limit
from router.errors import StreamInterruptedError, UpstreamError, UpstreamTimeoutError
from router.health import HealthTracker
from router.hedging import hedge_delay
from router.metrics import RouterMetrics
from router.provenance import AttemptRecord
from router.requests import continuation
from router.stall import StallMeter
from router.strategies import Planner

__all__ = ["Segment", "Session", "Shared"]

# Statuses that say the request, not the miner, is at fault (too long for its context, a
# max_tokens above its limit): try another miner, but do not count it against this one.
_REQUEST_FAULTS = frozenset({400, 413})
_DONE = "done"
_CHUNK = "chunk"
_ERROR = "error"


#: Share of the retry budget hedges leave untouched, so failover always finds tokens.
HEDGE_KEEP = 0.5


@dataclass(slots=True)
class Shared:
    """What every session of one router uses: the client and the decision core's state."""

    client: Client
    planner: Planner
    health: HealthTracker
    breaker: CircuitBreaker
    budget: RetryBudget
    config: RouterConfig
    clock: Clock
    metrics: RouterMetrics
    #: The p95 TTFT to hedge on for a miner without enough samples of its own (or None).
    cold_p95: Callable[[], float | None]
    #: Time the router's own loop stood still (not charged to miners' deadlines).
    stall: StallMeter
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the answer and the miner that produced it (``receipt`` empty if cut)."""

    candidate: Candidate
    text: str
    receipt: bytes


class _Attempt:
    """One request in flight to one miner."""

    __slots__ = ("candidate", "chunks", "closed", "deadlines", "final", "first_at", "last_at",
                 "last_stall", "parts", "permit", "request", "role", "start_stall", "started",
                 "task")

    def __init__(self, candidate: Candidate, permit: Permit, role: str, request: GenerateRequest,
                 started: float, deadlines: AttemptDeadlines, stall: float) -> None:
        self.candidate = candidate
        self.permit = permit
        self.role = role
        self.request = request
        self.started = started
        self.deadlines = deadlines
        self.first_at: float | None = None
        self.last_at = started
        # The stall meter's reading at the start and at the last chunk: deadlines that measure
        # the miner move back by the stall time since (router.stall).
        self.start_stall = stall
        self.last_stall = stall
        self.parts: list[str] = []
        self.chunks = 0
        self.final: GenerateChunk | None = None
        self.closed = False
        self.task: asyncio.Task[None] | None = None


_Event = tuple[_Attempt, str, object]


class Session:
    """Produces one answer; iterate :meth:`deltas`, then read the result attributes.

    Args:
        shared: the router's shared state.
        pool: the candidate snapshot the request was planned with.
        requirements: what the request needs from a miner (for replacements).
        request: the wire request.
        deadlines: the request's deadlines (shared by all its sessions).
        first: the planned miner, and ``permit`` its breaker permit.
        role: the first attempt's role (``primary``, ``member``, ``audit``).
        tried: hotkeys this request already used (shared by its sessions, so replacements are
            distinct miners); the session adds its own.
        records: the request's attempt log (shared by its sessions).
        hedge: whether to hedge this answer.
        max_attempts: attempts this session may make in all.

    After :meth:`deltas` ends normally: ``segments`` (the text and who produced it),
    ``finish_reason``, ``prompt_tokens``, ``completion_tokens`` and ``model`` are set.
    """

    def __init__(self, shared: Shared, pool: CandidatePool, requirements: Requirements,
                 request: GenerateRequest, deadlines: RequestDeadlines, first: Candidate,
                 permit: Permit, *, role: str, tried: set[str], records: list[AttemptRecord],
                 hedge: bool, max_attempts: int) -> None:
        self._s = shared
        self._pool = pool
        self._requirements = requirements
        self._original = request
        self._deadlines = deadlines
        self._first = (first, permit)
        self._role = role
        self._tried = tried
        self._records = records
        self._hedge = hedge and shared.config.hedge.enabled
        self._max_attempts = max_attempts
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        self._launched = 0
        self._racing: list[_Attempt] = []
        self._winner: _Attempt | None = None
        self._hedge_at: float | None = None
        self._failures: list[str] = []
        self._delivered: list[str] = []
        self._delivered_chunks = 0
        self.segments: list[Segment] = []
        self.finish_reason = "stop"
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.model = ""
        self.first_token_s: float | None = None

    @property
    def text(self) -> str:
        """Everything delivered so far."""
        return "".join(self._delivered)

    # --- the event loop ----------------------------------------------------------------------

    async def deltas(self) -> AsyncGenerator[str, None]:
        """Yield the answer's text as it arrives (non-empty pieces), across resumes.

        Raises:
            UpstreamError: every allowed attempt failed before any text was delivered.
            StreamInterruptedError: text was delivered, then the answer could not be resumed.
            UpstreamTimeoutError: the total deadline passed.
        """
        started = self._s.clock.monotonic()
        first, permit = self._first
        self._launch(first, permit, self._role, self._original)
        try:
            while True:
                event = await self._next_event()
                if event is None:
                    self._on_timers()
                    continue
                attempt, kind, payload = event
                if attempt.closed:
                    continue
                if kind == _CHUNK:
                    assert isinstance(payload, GenerateChunk)
                    text = self._on_chunk(attempt, payload)
                    if text:
                        if self.first_token_s is None:
                            self.first_token_s = self._s.clock.monotonic() - started
                        self._delivered.append(text)
                        yield text
                elif kind == _DONE:
                    assert payload is None or isinstance(payload, Receipt)
                    if self._on_done(attempt, payload):
                        return
                else:
                    assert isinstance(payload, QueryError)
                    self._fail(attempt, payload)
        except _LengthReached:
            return
        finally:
            self._close_all()

    async def _next_event(self) -> _Event | None:
        """The next queued event, or ``None`` when the nearest deadline came first."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        wait = self._next_due() - self._s.clock.monotonic()
        if wait <= 0:
            return None
        try:
            async with asyncio.timeout(wait):
                return await self._queue.get()
        except TimeoutError:
            return None

    def _next_due(self) -> float:
        stalled = self._s.stall.stalled()
        due = self._deadlines.total_at
        for attempt in self._racing:
            due = min(due, _ttft_due(attempt, stalled))
        if self._winner is not None:
            due = min(due, _token_due(self._winner, stalled))
        if self._hedge_at is not None:
            due = min(due, self._hedge_due(stalled))
        return due

    def _hedge_due(self, stalled: float) -> float:
        assert self._hedge_at is not None
        if not self._racing:
            return self._hedge_at
        return self._hedge_at + stalled - self._racing[0].start_stall

    def _on_timers(self) -> None:
        now = self._s.clock.monotonic()
        stalled = self._s.stall.stalled()
        if now >= self._deadlines.total_at:
            for attempt in [*self._racing, *([self._winner] if self._winner else [])]:
                self._record(attempt, "timeout", "total deadline", now)
                self._penalise(attempt, "timeout", None)
                self._stop(attempt)
            self._racing, self._winner = [], None
            total = self._deadlines.total_at - self._deadlines.start
            raise UpstreamTimeoutError(
                f"no complete answer within the request's {total:.3g} s deadline",
                failures=tuple(self._failures))
        for attempt in list(self._racing):
            if now >= _ttft_due(attempt, stalled):
                limit = attempt.deadlines.ttft_at - attempt.started
                self._fail(attempt, QueryTimeout(f"no first token within {limit:.3g} s",
                                                 phase="first_token"))
        winner = self._winner
        if winner is not None and now >= _token_due(winner, stalled):
            self._fail(winner, QueryTimeout(
                f"no token for {winner.deadlines.inter_token_s:g} s", phase="inter_token"))
        if self._hedge_at is not None and now >= self._hedge_due(stalled):
            self._hedge_at = None
            self._try_hedge()

    # --- events ------------------------------------------------------------------------------

    def _on_chunk(self, attempt: _Attempt, chunk: GenerateChunk) -> str:
        if not chunk.text and chunk.finish_reason is None:
            # A piece with no text carries no token. It neither wins the race nor restarts the
            # inter-token clock: otherwise a miner could hold a request past every deadline with
            # empty pieces, and have the first of them recorded as its time to first token.
            return ""
        now = self._s.clock.monotonic()
        if attempt in self._racing:
            self._win(attempt, now)
        attempt.last_at = now
        attempt.last_stall = self._s.stall.stalled()
        attempt.chunks += 1
        if chunk.finish_reason is not None:
            attempt.final = chunk
        if chunk.text:
            attempt.parts.append(chunk.text)
        return chunk.text

    def _win(self, attempt: _Attempt, now: float) -> None:
        """``attempt`` delivered first: it becomes the winner and the other racers are dropped."""
        self._racing.remove(attempt)
        for loser in self._racing:
            self._abandon(loser, lost=attempt.role == "hedge", now=now)
        self._racing, self._winner, self._hedge_at = [], attempt, None
        attempt.first_at = now

    def _on_done(self, attempt: _Attempt, receipt: Receipt | None) -> bool:
        """The attempt's stream ended with a verified trailer; ``True`` if the answer is done."""
        if attempt in self._racing:  # a trailer before any token: an empty answer
            self._win(attempt, self._s.clock.monotonic())
        final = attempt.final
        if receipt is None or final is None or final.finish_reason == "cancelled":
            why = "the miner cancelled the answer" if final is not None else \
                "the stream ended without a finish reason"
            self._fail(attempt, StreamIntegrityError(why))
            return False
        now = self._s.clock.monotonic()
        first = attempt.first_at if attempt.first_at is not None else now
        self._s.health.record_success(attempt.candidate.hotkey, first - attempt.started,
                                      now - attempt.started)
        self._s.breaker.succeeded(attempt.permit)
        self._record(attempt, "ok", "", now)
        self.segments.append(Segment(attempt.candidate, "".join(attempt.parts),
                                     receipt.to_bytes()))
        self.finish_reason = final.finish_reason or "stop"
        earlier = self._delivered_chunks
        self.completion_tokens = earlier + (final.completion_tokens or attempt.chunks)
        self.prompt_tokens = max((final.prompt_tokens or 0) - earlier, 0)
        self.model = attempt.candidate.model
        self._winner = None
        attempt.closed = True
        return True

    # --- failure, failover, hedging, resume --------------------------------------------------

    def _fail(self, attempt: _Attempt, error: QueryError) -> None:
        now = self._s.clock.monotonic()
        outcome = "timeout" if isinstance(error, QueryTimeout) else (
            "cut" if attempt.parts else "error")
        self._record(attempt, outcome, f"{error.kind}: {error}", now)
        self._penalise(attempt, error.kind, error)
        self._stop(attempt)
        self._failures.append(f"{attempt.candidate.hotkey}: {error.kind}: {error}")
        if attempt in self._racing:
            self._racing.remove(attempt)
            if self._racing:
                return  # a hedge (or the primary) is still on its way
        elif attempt is self._winner:
            self._winner = None
            self._keep_partial(attempt)
        self._replace()

    def _keep_partial(self, attempt: _Attempt) -> None:
        """Text a broken attempt delivered stays part of the answer (without a receipt)."""
        if attempt.parts:
            self.segments.append(Segment(attempt.candidate, "".join(attempt.parts), b""))
        self._delivered_chunks += attempt.chunks

    def _replace(self) -> None:
        """Send the answer (or its rest) to the next miner, or raise if none may be tried."""
        delivered = self.text
        request: GenerateRequest | None = self._original
        if delivered:
            request = continuation(self._original, delivered, self._delivered_chunks)
            if request is None:
                if self._delivered_chunks >= self._original.max_tokens:
                    self.finish_reason = "length"
                    self.completion_tokens = self._delivered_chunks
                    raise _LengthReached
                raise self._interrupted("the text so far cannot be continued")
        if self._launched >= self._max_attempts:
            raise self._exhausted(f"all {self._launched} attempts failed")
        picked = self._next_candidate()
        if picked is None:
            raise self._exhausted(f"{self._launched} attempts failed and no other miner is usable")
        if not self._s.budget.try_spend():
            self._s.metrics.budget_denied.labels("failover").inc()
            raise self._exhausted(f"{self._launched} attempts failed; the retry budget is spent")
        role = "resume" if delivered else ("failover" if self._role == "primary" else
                                           "replacement")
        assert request is not None
        self._launch(*picked, role, request)

    def _exhausted(self, message: str) -> UpstreamError:
        if self.text:
            return self._interrupted(message)
        return UpstreamError(message, failures=tuple(self._failures))

    def _interrupted(self, message: str) -> StreamInterruptedError:
        return StreamInterruptedError(f"the answer broke off after {len(self.text)} characters "
                                      f"and could not be resumed: {message}",
                                      partial=self.text, failures=tuple(self._failures))

    def _try_hedge(self) -> None:
        if self._winner is not None or not self._racing or self._launched >= self._max_attempts:
            return
        if self._deadlines.attempt(self._s.clock.monotonic()) is None:
            return  # too little time left for a hedge to finish: keep the budget's token
        picked = self._next_candidate()
        if picked is None:
            return
        # A hedge is an optimisation, failover is not: hedges may use only half the budget.
        if not self._s.budget.try_spend(keep=HEDGE_KEEP):
            self._s.metrics.budget_denied.labels("hedge").inc()
            self._s.breaker.abandoned(picked[1])
            return
        request = self._racing[0].request
        self._launch(*picked, "hedge", request)

    def _next_candidate(self) -> tuple[Candidate, Permit] | None:
        """The best-scoring usable miner this request has not tried, with its permit."""
        for candidate in self._s.planner.rank(self._pool, self._requirements,
                                              exclude=self._tried):
            permit = self._s.breaker.admit(candidate.hotkey)
            if permit is not None:
                return candidate, permit
        return None

    # --- attempts ----------------------------------------------------------------------------

    def _launch(self, candidate: Candidate, permit: Permit, role: str,
                request: GenerateRequest) -> None:
        s = self._s
        now = s.clock.monotonic()
        p95 = s.health.p95_ttft(candidate.hotkey)
        deadlines = self._deadlines.attempt(now, p95)
        if deadlines is None and self._launched == 0 and self._deadlines.remaining(now) > 0:
            # min_attempt_s keeps extra attempts from starting too late to finish; the first
            # attempt goes out whatever the caller's (short) timeout.
            total_at = self._deadlines.total_at
            deadlines = AttemptDeadlines(
                min(now + ttft_limit(self._deadlines.config, p95), total_at),
                self._deadlines.config.inter_token_s, total_at)
        if deadlines is None:
            s.breaker.abandoned(permit)
            raise UpstreamTimeoutError("too little time left before the request's deadline",
                                       failures=tuple(self._failures))
        self._tried.add(candidate.hotkey)
        self._launched += 1
        attempt = _Attempt(candidate, permit, role, request, now, deadlines, s.stall.stalled())
        self._racing.append(attempt)
        remaining = deadlines.total_timeout(now)
        timeouts = Timeouts(connect=min(s.config.connect_s, remaining),
                            first_byte=remaining, total=remaining)
        task = asyncio.create_task(self._run(attempt, timeouts))
        attempt.task = task
        s.tasks.add(task)
        task.add_done_callback(s.tasks.discard)
        if self._hedge and role != "hedge" and len(self._racing) == 1:
            # The fleet's median p95 caps the miner's own: a straggler's own p95 is inflated by
            # its slowness, so hedging after it would be too late.
            delay = hedge_delay(p95, ttft_timeout_s=deadlines.ttft_at - now,
                                budget_available=s.budget.can_spend(),
                                fleet_p95_s=s.cold_p95(), config=s.config.hedge)
            self._hedge_at = None if delay is None else now + delay

    async def _run(self, attempt: _Attempt, timeouts: Timeouts) -> None:
        """Stream one attempt onto the session's queue (never raises but CancelledError)."""
        put = self._queue.put_nowait
        c = attempt.candidate
        call = self._s.client.stream(Target(c.hotkey, c.url), ROUTE_GENERATE_STREAM,
                                     attempt.request, GenerateChunk, timeouts=timeouts)
        try:
            async for chunk in call:
                put((attempt, _CHUNK, chunk))
        except QueryError as exc:
            put((attempt, _ERROR, exc))
            return
        except (OSError, ValueError, RuntimeError) as exc:
            # aiohttp failures the client does not translate (a payload error while the
            # connection closes): this miner's failure all the same.
            put((attempt, _ERROR, StreamIntegrityError(f"stream failed: {exc!r}")))
            return
        put((attempt, _DONE, call.receipt))

    def _abandon(self, attempt: _Attempt, *, lost: bool, now: float) -> None:
        """Cancel an attempt that is no longer needed; a primary that lost to its hedge was
        slower than the hedge delay, which counts against its error rate (not its ejection)."""
        self._record(attempt, "lost_hedge" if lost else "cancelled", "", now)
        if lost:
            self._s.health.record_failure(attempt.candidate.hotkey, "slow")
        self._s.breaker.abandoned(attempt.permit)
        self._stop(attempt)

    def _penalise(self, attempt: _Attempt, kind: str, error: QueryError | None) -> None:
        hotkey = attempt.candidate.hotkey
        if isinstance(error, RemoteError) and error.status in _REQUEST_FAULTS:
            self._s.breaker.abandoned(attempt.permit)
            return
        self._s.health.record_failure(hotkey, kind)
        retry_after = error.retry_after if isinstance(error, RemoteError) else None
        self._s.breaker.failed(attempt.permit, retry_after_s=retry_after)

    def _stop(self, attempt: _Attempt) -> None:
        attempt.closed = True
        if attempt.task is not None and not attempt.task.done():
            attempt.task.cancel()

    def _record(self, attempt: _Attempt, outcome: str, detail: str, now: float) -> None:
        c = attempt.candidate
        ttft = None if attempt.first_at is None else attempt.first_at - attempt.started
        chars = sum(len(p) for p in attempt.parts)
        self._records.append(AttemptRecord(c.uid, c.hotkey, attempt.role, outcome, detail, ttft,
                                           now - attempt.started, chars))
        self._s.metrics.attempts.labels(attempt.role, outcome).inc()

    def _close_all(self) -> None:
        """Cancel whatever still runs (the caller stopped early, or an error ended the answer)."""
        now = self._s.clock.monotonic()
        for attempt in [*self._racing, *([self._winner] if self._winner else [])]:
            if not attempt.closed:
                self._record(attempt, "cancelled", "", now)
                self._s.breaker.abandoned(attempt.permit)
                self._stop(attempt)
        self._racing, self._winner = [], None


def _ttft_due(attempt: _Attempt, stalled: float) -> float:
    """When the attempt's first-token deadline falls, moved back by the router's stalls."""
    return attempt.deadlines.ttft_at + stalled - attempt.start_stall


def _token_due(attempt: _Attempt, stalled: float) -> float:
    """When the next token is due, moved back by the router's stalls since the last one."""
    return attempt.last_at + attempt.deadlines.inter_token_s + stalled - attempt.last_stall


class _LengthReached(Exception):
    """Internal: a cut stream had already delivered every allowed token."""
