"""The router: prompts in, verified answers out, from the miners of one subnet.

    async with Router(chain="./chain.db", netuid=1, wallet="alice", hotkey="default") as router:
        answer = await router.complete("12+34=", max_tokens=8)
        async for piece in router.stream([{"role": "user", "content": "hi"}]):
            ...

Eligibility comes from consensus (the metagraph's incentive and trust, refreshed as blocks
arrive; miners without an endpoint or whose ``info`` is unknown are skipped); the live signals
(TTFT and latency EWMAs, error and wrong-answer rates) order the eligible miners; ``info``
capabilities filter them per request. Per request, ``best`` and ``weighted`` send one miner the
prompt through a :class:`router.session.Session` (failover, hedging, deadlines, resume), and
``ensemble`` sends ``k`` miners and votes (:class:`router.vote.VoteTally`), stopping once the
vote is decided and recording who agreed and who dissented. Single answers to deterministic
requests are spot-checked by a few other miners in the background (:class:`AuditConfig`), so a
fast miner that answers wrongly loses its primary traffic even under ``best``.

Every answer is a :class:`Completion` whose :class:`Provenance` carries the miners, scores,
vote and signed receipts. Failures are :class:`router.errors.RouterError` subclasses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import Any

import numpy as np

from protocol.client import Client
from protocol.clock import Clock, SystemClock
from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.ledger.interface import Ledger
from protocol.messages import GenerateRequest
from router.breaker import CircuitBreaker, Permit
from router.budget import RetryBudget
from router.candidates import Candidate, CandidatePool, Requirements
from router.config import RouterConfig
from router.deadlines import RequestDeadlines, request_deadlines
from router.directory import Directory, Snapshot
from router.errors import (
    NoCandidatesError,
    RouterClosedError,
    RouterError,
    RouterInputError,
    UpstreamError,
)
from router.health import HealthTracker
from router.metrics import RouterMetrics
from router.provenance import (
    AttemptRecord,
    BallotRecord,
    Completion,
    MinerAnswer,
    Provenance,
    Usage,
    VoteRecord,
)
from router.requests import Prompt, build_request
from router.session import Session, Shared
from router.stall import StallMeter
from router.strategies import Plan, Planner, Strategy, standing
from router.vote import VoteResult, VoteTally

__all__ = ["Router", "RouterStream"]

log = logging.getLogger("ensemble.router")

# The cold hedging reference (median of the miners' p95 TTFTs) is recomputed at most this often:
# it moves slowly and costs a sort per miner.
_COLD_P95_REFRESH_S = 1.0


class Router:
    """Routes prompts to the miners of one subnet. Use ``async with Router(...) as router``.

    Args:
        chain: a ``--chain`` value (node URL or chain file path); or give ``ledger``.
        netuid: the subnet (overrides ``config.netuid``).
        wallet, hotkey, wallet_path, password: the signing hotkey from a wallet; or ``keypair``.
        keypair: the signing key, directly.
        ledger: an open :class:`Ledger` (the router does not close it).
        config: the router's configuration (default ``RouterConfig()``).
        clock: time source (tests); the system clock by default.

    The constructor does no I/O: the wallet is unlocked, the ledger opened and the metagraph
    read in :meth:`start` (``async with``).

    Raises:
        ConfigError: neither or both of ``chain``/``ledger``, or of ``wallet``/``keypair``.
    """

    def __init__(self, *, chain: str | None = None, netuid: int | None = None,
                 wallet: str | None = None, hotkey: str = "default",
                 wallet_path: Path | None = None, password: str | None = None,
                 keypair: Keypair | None = None, ledger: Ledger | None = None,
                 config: RouterConfig | None = None, clock: Clock | None = None) -> None:
        if (chain is None) == (ledger is None):
            raise ConfigError("give the router one of chain= (a --chain value) or ledger=")
        if (wallet is None) == (keypair is None):
            raise ConfigError("give the router one of wallet= (with hotkey=) or keypair=")
        config = config or RouterConfig()
        self.config = config if netuid is None else dataclasses.replace(config, netuid=netuid)
        self._chain = chain
        self._wallet = (wallet, hotkey, wallet_path, password)
        self._keypair = keypair
        self._ledger = ledger
        self._clock: Clock = clock or SystemClock()
        self.metrics = RouterMetrics()
        self._stack: AsyncExitStack | None = None
        self._stop = asyncio.Event()
        self._follow: asyncio.Task[None] | None = None
        self._stall_task: asyncio.Task[None] | None = None
        self._shared: Shared | None = None
        self._directory: Directory | None = None
        self._audit_budget = RetryBudget(config.audit.budget, self._clock)
        self._audits: set[asyncio.Task[None]] = set()
        self._judged: dict[str, int] = {}
        self._verdicts: dict[str, tuple[float, float]] = {}
        self._rng = np.random.default_rng(config.seed)
        self._cold: tuple[float | None, float] = (None, -1.0)
        self._sequence = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Unlock the key, open the ledger and client, read the metagraph, follow new blocks.

        Raises:
            ConfigError, KeyfileError, LedgerError: the key or the chain cannot be opened.
        """
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            keypair = self._keypair
            if keypair is None:
                keypair = await asyncio.to_thread(self._unlock)
            ledger = self._ledger
            if ledger is None:
                from protocol.ledger.connect import open_ledger  # noqa: PLC0415 - only for chain=

                assert self._chain is not None
                ledger = await stack.enter_async_context(open_ledger(self._chain))
            cfg = self.config
            client = await stack.enter_async_context(
                Client(keypair, cfg.client, netuid=cfg.netuid, clock=self._clock))
            health = HealthTracker(cfg.health)
            breaker = CircuitBreaker(cfg.breaker, self._clock)
            self._shared = Shared(
                client=client, planner=Planner(cfg.strategies, health, breaker, self._rng),
                health=health, breaker=breaker, budget=RetryBudget(cfg.budget, self._clock),
                config=cfg, clock=self._clock, metrics=self.metrics, cold_p95=self._cold_p95,
                stall=StallMeter(cfg.stall, self._clock))
            self._directory = Directory(ledger, client, cfg, self._clock,
                                        own_hotkey=keypair.address)
            self._stack = stack
            await self.refresh()
        except BaseException:
            self._shared = self._directory = self._stack = None
            await stack.aclose()
            raise
        self._stop.clear()
        self._follow = asyncio.create_task(self._directory.follow(self._stop, self._on_sync),
                                           name="router-metagraph")
        self._stall_task = asyncio.create_task(self._shared.stall.run(), name="router-stall")
        self.metrics.loop_stalled.set_function(self._shared.stall.stalled)

    def _unlock(self) -> Keypair:
        from protocol.wallet import Wallet, default_wallet_root  # noqa: PLC0415 - wallet= only

        name, hotkey, root, password = self._wallet
        assert name is not None
        return Wallet(root or default_wallet_root(os.environ), name).hotkey(hotkey, password)

    async def aclose(self) -> None:
        """Stop following blocks, cancel requests and audits in flight, close everything."""
        self._stop.set()
        pending = [t for t in (self._follow, self._stall_task, *self._audits) if t is not None]
        if self._shared is not None:
            pending += list(self._shared.tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._follow = self._stall_task = None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
        self._shared = None

    async def refresh(self) -> Snapshot:
        """Re-read the metagraph now (also asking miners whose ``info`` failed again)."""
        directory = self._require()[1]
        snapshot = await directory.refresh(retry_failed=True)
        self._on_sync(snapshot)
        return snapshot

    def _on_sync(self, snapshot: Snapshot) -> None:
        shared = self._shared
        if shared is None:
            return
        shared.health.retain(snapshot.hotkeys)
        shared.breaker.retain(snapshot.hotkeys)
        present = set(snapshot.hotkeys)
        for gone in [h for h in self._judged if h not in present]:
            del self._judged[gone]
        for gone in [h for h in self._verdicts if h not in present]:
            del self._verdicts[gone]
        self.metrics.eligible.set(len(snapshot.pool))
        self.metrics.block.set(snapshot.block)

    def _cold_p95(self) -> float | None:
        """The median p95 TTFT of the pool's measured miners: the hedge delay of a miner with
        too few samples of its own (``None`` until some miner has enough)."""
        value, until = self._cold
        now = self._clock.monotonic()
        if now < until or self._shared is None or self._directory is None:
            return value
        health = self._shared.health
        known = [p for h in self._directory.snapshot.pool.hotkeys
                 if (p := health.p95_ttft(h)) is not None]
        value = float(np.median(known)) if known else None
        self._cold = (value, now + _COLD_P95_REFRESH_S)
        return value

    def _require(self) -> tuple[Shared, Directory]:
        if self._shared is None or self._directory is None:
            raise RouterClosedError("the router is not running: use 'async with Router(...)'")
        return self._shared, self._directory

    # --- state, for callers, the gateway and tests ---------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The current view of the subnet (pool, hotkeys, block)."""
        return self._require()[1].snapshot

    @property
    def health(self) -> HealthTracker:
        """The live signals of every miner."""
        return self._require()[0].health

    @property
    def breaker(self) -> CircuitBreaker:
        """The ejection state of every miner."""
        return self._require()[0].breaker

    @property
    def budget(self) -> RetryBudget:
        """The router-wide retry budget (failover, hedges and resumes)."""
        return self._require()[0].budget

    @property
    def running(self) -> bool:
        """Whether the router is started and not closed."""
        return self._shared is not None

    def usable(self) -> int:
        """How many pool miners are not ejected now."""
        shared, directory = self._require()
        blocked = shared.breaker.blocked()
        self.metrics.blocked.set(len(blocked))
        return sum(1 for h in directory.snapshot.pool.hotkeys if h not in blocked)

    def judged(self, hotkey: str) -> int:
        """How many of ``hotkey``'s answers a vote or audit has judged."""
        return self._judged.get(hotkey, 0)

    async def audits_idle(self) -> None:
        """Wait until no audit runs (tests and benchmarks read the health signals after)."""
        while self._audits:
            await asyncio.gather(*list(self._audits), return_exceptions=True)

    # --- requests ----------------------------------------------------------------------------

    async def complete(self, prompt: Prompt, *, strategy: Strategy | str | None = None,
                       k: int | None = None, max_tokens: int = 64, temperature: float = 0.0,
                       top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (),
                       capabilities: Sequence[str] = (), model: str | None = None,
                       timeout: float | None = None, request_id: str | None = None,
                       scorer: Callable[[str], float] | None = None) -> Completion:
        """Answer ``prompt`` (a string, or chat messages) and say who answered.

        Args:
            prompt: a prompt string, or a non-empty list of ``{"role", "content"}`` messages.
            strategy: ``best``, ``weighted`` or ``ensemble`` (default: the config's).
            k: ensemble size (default ``config.strategies.ensemble_k``).
            max_tokens, temperature, top_p, seed, stop: sampling, as on the wire.
            capabilities: tags a miner must serve; model: a model name it must serve.
            timeout: the caller's own limit in seconds (shortens the total deadline).
            request_id: an id for provenance and logs (default: a fresh one).
            scorer: rates a raw answer for ``best_of_n`` voting (default: the voter's weight).

        Raises:
            RouterInputError: an invalid argument (``param`` names it).
            NoCandidatesError: no eligible, fit, non-ejected miner.
            UpstreamError: every allowed attempt failed (``UpstreamTimeoutError`` at the total
                deadline).
            RouterClosedError: the router is not running.
        """
        call = self._prepare(prompt, strategy, k, max_tokens, temperature, top_p, seed, stop,
                             capabilities, model, timeout, request_id)
        if call.strategy is Strategy.ENSEMBLE:
            return await self._observe(call, self._ensemble(call, scorer))
        stream = RouterStream(self._single(call))
        async with stream:
            async for _ in stream:
                pass
        assert stream.completion is not None
        return stream.completion

    def stream(self, prompt: Prompt, *, strategy: Strategy | str | None = None,
               k: int | None = None, max_tokens: int = 64, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (),
               capabilities: Sequence[str] = (), model: str | None = None,
               timeout: float | None = None, request_id: str | None = None,
               scorer: Callable[[str], float] | None = None) -> RouterStream:
        """Like :meth:`complete`, as an async iterator of text pieces.

        Argument errors raise here; routing errors raise from the iteration. Failover before
        the first piece is invisible; a break after it resumes on another miner or raises
        :class:`StreamInterruptedError`. ``completion`` is set once the iteration ends. An
        ensemble yields its voted answer in one piece once the vote is decided.
        """
        call = self._prepare(prompt, strategy, k, max_tokens, temperature, top_p, seed, stop,
                             capabilities, model, timeout, request_id)
        if call.strategy is Strategy.ENSEMBLE:
            return RouterStream(self._ensemble_pieces(call, scorer))
        return RouterStream(self._single(call))

    def _prepare(self, prompt: Prompt, strategy: Strategy | str | None, k: int | None,
                 max_tokens: int, temperature: float, top_p: float, seed: int | None,
                 stop: Sequence[str], capabilities: Sequence[str], model: str | None,
                 timeout: float | None, request_id: str | None) -> _Call:
        self._require()
        if strategy is None:
            chosen = self.config.strategy
        else:
            try:
                chosen = Strategy(strategy)
            except ValueError:
                raise RouterInputError(f"unknown strategy {strategy!r}; use best, weighted or "
                                       "ensemble", param="strategy") from None
        if k is not None and not (isinstance(k, int) and 1 <= k <= 16):
            raise RouterInputError("k must be an integer in [1, 16]", param="k")
        if isinstance(stop, str):
            stop = [stop]
        request = build_request(prompt, max_tokens=max_tokens, temperature=temperature,
                                top_p=top_p, seed=seed, stop=stop)
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise RouterInputError("timeout must be a number of seconds > 0", param="timeout")
        requirements = Requirements(capabilities=frozenset(capabilities), model=model)
        self._sequence += 1
        rid = request_id or f"rq-{os.urandom(6).hex()}"
        return _Call(rid, chosen, k, request, requirements, timeout, time.perf_counter())

    async def _observe(self, call: _Call, work: Any) -> Completion:
        try:
            completion: Completion = await work
        except RouterError as exc:
            self.metrics.requests.labels(call.strategy.value, exc.code).inc()
            raise
        self.metrics.requests.labels(call.strategy.value, "ok").inc()
        self.metrics.latency.labels(call.strategy.value).observe(
            time.perf_counter() - call.started)
        return completion

    def _plan(self, call: _Call, pool: CandidatePool, k: int | None = None) -> Plan:
        shared = self._require()[0]
        plan = shared.planner.plan(pool, call.strategy, call.requirements, k=k)
        if not plan:
            raise self._no_candidates(pool, call.requirements)
        return plan

    def _no_candidates(self, pool: CandidatePool, requirements: Requirements) -> NoCandidatesError:
        shared = self._require()[0]
        netuid = self.config.netuid
        if not len(pool):
            return NoCandidatesError(f"no eligible miner serves subnet {netuid} now")
        if not pool.mask(requirements).any():
            wanted = sorted(requirements.capabilities)
            return NoCandidatesError(
                f"no miner of subnet {netuid} serves what the request needs "
                f"(capabilities {wanted or 'any'}, model {requirements.model or 'any'})")
        waits = [shared.breaker.ejection_remaining(h) for h in pool.hotkeys]
        soonest = min((w for w in waits if w > 0), default=None)
        return NoCandidatesError(f"every fit miner of subnet {netuid} is ejected after failures",
                                 retry_after=soonest)

    def _deadlines(self, call: _Call) -> RequestDeadlines:
        return request_deadlines(self.config.deadlines, self._clock.monotonic(), call.timeout)

    def _admit(self, plan: Plan) -> tuple[Candidate, Permit, list[Candidate]]:
        """The first planned miner the breaker admits now, and the rest of the plan."""
        shared = self._require()[0]
        attempts = list(plan.attempts)
        for i, candidate in enumerate(attempts):
            permit = shared.breaker.admit(candidate.hotkey)
            if permit is not None:
                return candidate, permit, attempts[i + 1:]
        raise NoCandidatesError("every planned miner was ejected while planning")

    # --- one answer (best, weighted) ---------------------------------------------------------

    async def _single(self, call: _Call) -> AsyncIterator[str | Completion]:
        """Yield text pieces, then the :class:`Completion` (consumed by :class:`RouterStream`)."""
        shared, directory = self._require()
        snapshot = directory.snapshot
        try:
            plan = self._plan(call, snapshot.pool)
            primary, permit, _ = self._admit(plan)
        except RouterError as exc:
            self.metrics.requests.labels(call.strategy.value, exc.code).inc()
            raise
        shared.budget.record_primary()
        self._audit_budget.record_primary()
        records: list[AttemptRecord] = []
        session = Session(shared, snapshot.pool, call.requirements, call.request,
                          self._deadlines(call), primary, permit, role="primary", tried=set(),
                          records=records, hedge=True,
                          max_attempts=1 + self.config.strategies.max_failover)
        try:
            # aclosing: when the caller closes this generator early, the session's own closes
            # now, cancelling its attempts, rather than whenever the loop finalises it.
            async with aclosing(session.deltas()) as deltas:
                async for piece in deltas:
                    yield piece
        except RouterError as exc:
            self.metrics.requests.labels(call.strategy.value, exc.code).inc()
            raise
        if session.first_token_s is not None:
            self.metrics.ttft.observe(session.first_token_s)
        scores = _Scores(shared.planner, self._reliability, snapshot.pool, call.requirements, plan)
        answers = tuple(MinerAnswer(s.candidate.uid, s.candidate.hotkey,
                                    *scores.of(s.candidate.hotkey), s.text, "", None, s.receipt)
                        for s in session.segments)
        provenance = Provenance(call.request_id, call.strategy.value,
                                (plan.primary[0].uid, plan.primary[0].hotkey), answers, None,
                                tuple(records), snapshot.block)
        completion = Completion(session.text, session.finish_reason,
                                Usage(session.prompt_tokens, session.completion_tokens),
                                session.model, provenance)
        self.metrics.requests.labels(call.strategy.value, "ok").inc()
        self.metrics.latency.labels(call.strategy.value).observe(
            time.perf_counter() - call.started)
        last = session.segments[-1] if session.segments else None
        if last is not None and last.receipt:
            self._maybe_audit(call, snapshot.pool, last.candidate, session.text)
        yield completion

    # --- ensembles ---------------------------------------------------------------------------

    async def _ensemble_pieces(self, call: _Call, scorer: Callable[[str], float] | None,
                               ) -> AsyncIterator[str | Completion]:
        completion = await self._observe(call, self._ensemble(call, scorer))
        if completion.text:
            yield completion.text
        yield completion

    async def _ensemble(self, call: _Call, scorer: Callable[[str], float] | None) -> Completion:
        shared, directory = self._require()
        snapshot = directory.snapshot
        plan = self._plan(call, snapshot.pool, call.k)
        deadlines = self._deadlines(call)
        tried: set[str] = set()
        records: list[AttemptRecord] = []
        sessions: list[Session] = []
        for candidate in plan.primary:
            permit = shared.breaker.admit(candidate.hotkey)
            if permit is None:
                continue
            shared.budget.record_primary()
            self._audit_budget.record_primary()
            sessions.append(Session(
                shared, snapshot.pool, call.requirements, call.request, deadlines, candidate,
                permit, role="member", tried=tried, records=records, hedge=False,
                max_attempts=1 + self.config.strategies.max_failover))
        if not sessions:
            raise self._no_candidates(snapshot.pool, call.requirements)
        tried.update(c.hotkey for c in plan.primary)
        scores = _Scores(shared.planner, self._reliability, snapshot.pool, call.requirements, plan)
        method = self.config.vote_method
        tally, finished, stopped_early, failures = await self._poll(sessions, scores, method)
        if not finished:
            raise UpstreamError(f"none of the {len(sessions)} ensemble members answered",
                                failures=failures)
        result = _aggregate(tally, method, self.config.min_agree, scorer, scores, finished)
        agreed = method == "majority" and result.winner is not None and \
            len(result.agreeing) >= self.config.min_agree
        if agreed:
            self._feedback(result, "ensemble")
        source = next(s for s in finished if _voter(s).hotkey == result.source) \
            if result.source is not None else finished[0]
        answers = _answers(finished, scores, tally_normalised=_normalised_of(result),
                           winner=result.winner)
        vote = _vote_record(result, agreed or method != "majority", stopped_early)
        provenance = Provenance(call.request_id, call.strategy.value,
                                (plan.primary[0].uid, plan.primary[0].hotkey), answers, vote,
                                tuple(records), snapshot.block)
        text = result.answer if result.answer is not None else source.text
        return Completion(text, source.finish_reason,
                          Usage(source.prompt_tokens, source.completion_tokens), source.model,
                          provenance)

    async def _poll(self, sessions: list[Session], scores: _Scores, method: str,
                    ) -> tuple[VoteTally, list[Session], bool, tuple[str, ...]]:
        """Run every session; add answers to a tally as they finish; stop once decided."""
        tally = VoteTally(max_weight=1.0)
        tasks = {asyncio.ensure_future(_drain(s)): s for s in sessions}
        finished: list[Session] = []
        failures: list[str] = []
        expected = len(sessions)
        stopped_early = False
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    session = tasks.pop(task)
                    error = task.exception()
                    if error is not None:
                        expected -= 1
                        failures.append(str(error))
                        continue
                    voter = _voter(session)
                    tally.add(voter.hotkey, session.text, scores.of(voter.hotkey)[1])
                    finished.append(session)
                if tasks and _decided(tally, method, self.config.min_agree, expected):
                    stopped_early = True
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return tally, finished, stopped_early, tuple(failures)

    def _feedback(self, result: VoteResult, kind: str) -> None:
        """Record who agreed with a decided vote and who dissented."""
        health = self._require()[0].health
        for hotkey in result.agreeing:
            health.record_right(hotkey)
            self._verdict(hotkey, right=True)
        for hotkey in result.dissenting:
            health.record_wrong(hotkey)
            self._verdict(hotkey, right=False)
        self.metrics.votes.labels(kind, "dissent" if result.dissenting else "unanimous").inc()

    def _verdict(self, hotkey: str, *, right: bool) -> None:
        self._judged[hotkey] = self._judged.get(hotkey, 0) + 1
        r, w = self._verdicts.get(hotkey, (0.0, 0.0))
        r, w = r * _VERDICT_MEMORY, w * _VERDICT_MEMORY
        self._verdicts[hotkey] = (r + 1.0, w) if right else (r, w + 1.0)

    def _reliability(self, hotkey: str) -> float:
        """How much ``hotkey``'s ballot counts, from the votes that judged it (see
        :func:`reliability`)."""
        return reliability(*self._verdicts.get(hotkey, (0.0, 0.0)))

    # --- audits ------------------------------------------------------------------------------

    def _maybe_audit(self, call: _Call, pool: CandidatePool, answered: Candidate,
                     text: str) -> None:
        audit = self.config.audit
        if not audit.enabled or call.request.temperature != 0 or self._stop.is_set():
            return
        on_probation = self._judged.get(answered.hotkey, 0) < audit.probation
        if not on_probation and self._rng.random() >= audit.rate:
            return
        if self._audit_budget.available() < audit.auditors:
            self.metrics.budget_denied.labels("audit").inc()
            return
        task = asyncio.create_task(self._audit(call, pool, answered, text))
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)

    async def _audit(self, call: _Call, pool: CandidatePool, answered: Candidate,
                     text: str) -> None:
        """Ask other miners the same question; record agreement once a majority forms."""
        shared = self._require()[0]
        audit = self.config.audit
        plan = shared.planner.plan(pool, Strategy.ENSEMBLE, call.requirements,
                                   k=audit.max_auditors, exclude=(answered.hotkey,))
        auditors = list(plan.primary)
        scores = _Scores(shared.planner, self._reliability, pool, call.requirements, plan)
        tally = VoteTally(max_weight=1.0)
        tally.add(answered.hotkey, text, scores.of(answered.hotkey)[1])
        deadlines = request_deadlines(self.config.deadlines, self._clock.monotonic())
        records: list[AttemptRecord] = []
        asked = 0
        try:
            while auditors and asked < audit.max_auditors:
                batch_size = audit.auditors if asked == 0 else 1
                batch = [auditors.pop(0) for _ in range(min(batch_size, len(auditors)))]
                sessions = []
                for candidate in batch:
                    permit = shared.breaker.admit(candidate.hotkey)
                    if permit is None or not self._audit_budget.try_spend():
                        if permit is not None:
                            shared.breaker.abandoned(permit)
                        continue
                    sessions.append(Session(
                        shared, pool, call.requirements, call.request, deadlines, candidate,
                        permit, role="audit", tried=set(), records=records, hedge=False,
                        max_attempts=1))
                asked += len(batch)
                for session, outcome in zip(sessions, await asyncio.gather(
                        *(_drain(s) for s in sessions), return_exceptions=True), strict=True):
                    if not isinstance(outcome, BaseException):
                        voter = _voter(session)
                        tally.add(voter.hotkey, session.text, scores.of(voter.hotkey)[1])
                result = tally.majority(self.config.min_agree)
                if result.winner is not None:
                    self._feedback(result, "audit")
                    return
            self.metrics.votes.labels("audit", "undecided").inc()
        except RouterError as exc:
            log.debug("audit of %s abandoned: %s", answered.hotkey, exc)


class RouterStream:
    """An answer as it streams: ``async for piece in stream``; then ``stream.completion``.

    Close it (``async with``, or :meth:`aclose`) when leaving the iteration early: that cancels
    the attempts still running.
    """

    def __init__(self, source: AsyncIterator[str | Completion]) -> None:
        self._source = source
        self.completion: Completion | None = None

    def __aiter__(self) -> RouterStream:
        return self

    async def __anext__(self) -> str:
        if self.completion is not None:
            raise StopAsyncIteration
        item = await self._source.__anext__()
        if isinstance(item, Completion):
            self.completion = item
            await self.aclose()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the answer (cancelling its attempts) if it is still running."""
        closer = getattr(self._source, "aclose", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> RouterStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --- helpers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    """One validated request."""

    request_id: str
    strategy: Strategy
    k: int | None
    request: GenerateRequest
    requirements: Requirements
    timeout: float | None
    started: float


class _Scores:
    """Routing score and ballot weight of the miners of one request (planned or not).

    A ballot weighs the miner's consensus standing times its reliability (see
    :meth:`Router._reliability`).
    """

    def __init__(self, planner: Planner, reliability_of: Callable[[str], float],
                 pool: CandidatePool, requirements: Requirements, plan: Plan) -> None:
        self._planner = planner
        self._reliability_of = reliability_of
        self._pool = pool
        self._requirements = requirements
        self._plan_scores = dict(zip((c.hotkey for c in plan.attempts), plan.scores,
                                     strict=True))
        self._standing: np.ndarray | None = None
        self._known: dict[str, tuple[float, float]] = {}

    def of(self, hotkey: str) -> tuple[float, float]:
        """``(routing score, ballot weight in [0, 1])`` of ``hotkey``."""
        known = self._known.get(hotkey)
        if known is None:
            score = self._plan_scores.get(hotkey)
            if score is None:
                score = self._planner.scores(self._pool, self._requirements).get(hotkey, 0.0)
            if self._standing is None:
                self._standing = standing(self._pool, self._planner.config)
            position = self._pool.index.get(hotkey)
            base = 0.0 if position is None else float(self._standing[position])
            known = (score, min(max(base * self._reliability_of(hotkey), 0.0), 1.0))
            self._known[hotkey] = known
        return known


# A miner right 99 % of the time gets full weight: the log-odds scale is set by it.
_RELIABLE = 0.99
# Each verdict keeps 98 % of the earlier ones' weight: about the last fifty count, so a miner
# that changes its model is re-judged within a few dozen votes.
_VERDICT_MEMORY = 0.98


def reliability(right: float, wrong: float) -> float:
    """A ballot's weight factor in [0, 1] from (decayed) counts of agreeing and dissenting
    verdicts: the log-odds ``log(p / (1 - p))`` of the miner being right, ``p`` the posterior
    mean under a Beta(2, 1) prior, scaled so that ``p >= 0.99`` gives 1 and ``p <= 0.5`` (no
    better than a coin) gives 0. Weighted majority is most accurate with log-odds weights
    (Nitzan and Paroush), and then a miner that is almost never wrong outvotes two mediocre
    ones that happen to agree."""
    p = min((right + 2.0) / (right + wrong + 3.0), _RELIABLE)
    return max(0.0, math.log(p / (1.0 - p)) / math.log(_RELIABLE / (1.0 - _RELIABLE)))


async def _drain(session: Session) -> None:
    async with aclosing(session.deltas()) as deltas:
        async for _ in deltas:
            pass


def _voter(session: Session) -> Candidate:
    """The miner that finished a session's answer (its last segment's)."""
    return session.segments[-1].candidate


def _decided(tally: VoteTally, method: str, min_agree: int, expected: int) -> bool:
    if method == "first_valid":
        return tally.first_valid().winner is not None
    if method == "majority":
        return tally.decided(min_agree, expected)
    return False  # best-of-n needs every answer


def _aggregate(tally: VoteTally, method: str, min_agree: int,
               scorer: Callable[[str], float] | None, scores: _Scores,
               finished: list[Session]) -> VoteResult:
    if method == "first_valid":
        return tally.first_valid()
    if method == "best_of_n":
        if scorer is None:
            by_text: dict[str, float] = {}
            for session in finished:
                weight = scores.of(_voter(session).hotkey)[1]
                by_text[session.text] = max(by_text.get(session.text, 0.0), weight)
            return tally.best_of(lambda raw: by_text.get(raw, 0.0))
        return tally.best_of(scorer)
    result = tally.majority(min_agree)
    # No answer reached the quorum: the heaviest ballot still answers, marked as not agreed.
    return result if result.winner is not None else tally.majority(1)


def _normalised_of(result: VoteResult) -> dict[str, str]:
    return {h: b.answer for b in result.ballots for h in b.hotkeys}


def _answers(finished: list[Session], scores: _Scores, *, tally_normalised: dict[str, str],
             winner: str | None) -> tuple[MinerAnswer, ...]:
    out = []
    for session in finished:
        voter = _voter(session).hotkey
        for segment in session.segments:
            c = segment.candidate
            score, weight = scores.of(c.hotkey)
            is_voter = c.hotkey == voter
            normalised = tally_normalised.get(c.hotkey, "") if is_voter else ""
            agreed = (normalised == winner) if is_voter and winner is not None else None
            out.append(MinerAnswer(c.uid, c.hotkey, score, weight,
                                   session.text if is_voter else segment.text, normalised,
                                   agreed, segment.receipt))
    return tuple(out)


def _vote_record(result: VoteResult, agreed: bool, stopped_early: bool) -> VoteRecord:
    return VoteRecord(result.method, result.winner, agreed, result.weight, result.total_weight,
                      tuple(BallotRecord(b.answer, b.weight, b.hotkeys) for b in result.ballots),
                      stopped_early)
