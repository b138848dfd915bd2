"""The validator's network loop: challenge miners, score signed answers, set weights.

Each step: refresh the metagraph, sample K serving miners (seeded round robin), ask each for
its ``info``, send it challenges from the secret-seeded task suite concurrently through the
signed client, verify every receipt, grade, and fold the mean reward into the miner's score
(an EMA keyed by hotkey and registration block). Every ``weights_interval`` blocks the scores
become a weight row, set directly or through commit-reveal. State is saved atomically after
every step, so a validator killed at any moment resumes with its scores and pending commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from protocol.client import Client, QueryResult, Target, Timeouts, endpoint_url
from protocol.keys import Keypair
from protocol.ledger.builders import TxBuilder
from protocol.ledger.errors import LedgerError, NoSuchItemError, TxRejected, WaitTimeout
from protocol.ledger.interface import Ledger, submit_and_wait
from protocol.ledger.metagraph import Metagraph as LedgerMetagraph
from protocol.ledger.views import SubnetInfo
from protocol.ledger.weights import commit_digest
from protocol.messages import (
    ROUTE_GENERATE,
    ROUTE_INFO,
    GenerateResponse,
    InfoRequest,
    InfoResponse,
)
from validators.errors import WeightsError
from validators.metagraph import Identity, Metagraph
from validators.relevance import Embedder
from validators.reward import RewardConfig, outcome_of, score_outcome
from validators.sampling import SAMPLING_PURPOSE
from validators.scores import ScoreBook
from validators.seeding import derive_rng
from validators.state import PendingCommit, ValidatorState, load_state, save_state
from validators.tasks import Challenge, SelectionConfig, challenges_for
from validators.weights import WeightLimits, weights_from_scores

log = logging.getLogger("ensemble.validator")

#: How long a transaction may take to be included before the step gives up on it (it is
#: retried at the next interval); a few blocks on any sensible block time.
TX_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    """Everything the loop needs, passed in by the entry point.

    Attributes:
        netuid: the subnet validated.
        secret: at least 16 secret bytes seeding challenges and sampling.
        state_path: where scores, pending commits and audit receipts are saved.
        sample_size: miners queried per step (K).
        weights_interval: blocks between weight submissions.
        alpha: EMA rate of the scores.
        timeouts: client deadlines for each challenge.
        selection: challenges per miner and the share testing unclaimed capabilities.
        retry_s: wait after a step the ledger failed (node unreachable, say); it doubles on
            each further failure, up to ``max_retry_s``.
    """

    netuid: int
    secret: bytes
    state_path: Path
    sample_size: int = 8
    weights_interval: int = 10
    alpha: float = 0.1
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(connect=2.0, first_byte=5.0,
                                                                 total=8.0))
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    retry_s: float = 2.0
    max_retry_s: float = 60.0


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one step did (printed as the progress line)."""

    step: int
    block: int
    queried: int
    answers: int
    errors: int
    mean_reward: float
    weights: str

    def line(self) -> str:
        """The one-line progress summary."""
        return (f"step {self.step} block {self.block}: {self.queried} miners queried, "
                f"{self.answers} answers, mean reward {self.mean_reward:.3f}, "
                f"{self.errors} errors; weights: {self.weights}")


class ValidatorMetrics:
    """Prometheus metrics of one validator."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.steps = Counter("ensemble_validator_steps", "Steps completed", registry=self.registry)
        self.queries = Counter("ensemble_validator_queries", "Challenges sent, by outcome",
                               ["outcome"], registry=self.registry)
        self.reward = Histogram("ensemble_validator_reward", "Reward per answer",
                                buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
                                registry=self.registry)
        self.weights = Counter("ensemble_validator_weight_txs", "Weight transactions, by kind",
                               ["kind", "result"], registry=self.registry)
        self.block = Gauge("ensemble_validator_block", "Last block seen", registry=self.registry)


def derive_secret(hotkey: Keypair) -> bytes:
    """A stable secret from the hotkey seed: private, and the same after a restart."""
    return hashlib.sha256(b"ensemblenet/validator-secret/v1" + hotkey.seed).digest()


class Validator:
    """One validator on one subnet. Construct, then ``await run(stop)`` or call ``step()``."""

    def __init__(self, hotkey: Keypair, ledger: Ledger, client: Client,
                 config: ValidatorConfig, *, embedder: Embedder | None = None,
                 reward_config: RewardConfig | None = None) -> None:
        self.hotkey = hotkey
        self.ledger = ledger
        self.client = client
        self.config = config
        self.metrics = ValidatorMetrics()
        self._embedder = embedder
        self._reward = reward_config or RewardConfig(timeout_s=config.timeouts.total)
        self.state = ValidatorState(scores=ScoreBook(alpha=config.alpha))
        self._infos: dict[Identity, InfoResponse] = {}
        self._last_weights_block = -1
        # Weight transactions wait for inclusion in a block (up to a block time); they run in
        # the background so scoring never stalls behind the ledger.
        self._weights_task: asyncio.Task[str] | None = None
        self._weights_status = "none yet"

    # --- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Resume from the state file if there is one (raises ValidatorStateError if corrupt)."""
        state = load_state(self.config.state_path)
        if state is not None:
            if state.scores.alpha != self.config.alpha:
                state.scores = ScoreBook.from_dict({**state.scores.to_dict(),
                                                    "alpha": self.config.alpha})
            self.state = state

    def save(self) -> None:
        """Persist the state atomically."""
        save_state(self.config.state_path, self.state)

    async def aclose(self) -> None:
        """Cancel a weight transaction still waiting for inclusion (it stays pending on disk)."""
        if self._weights_task is not None:
            self._weights_task.cancel()
            await asyncio.gather(self._weights_task, return_exceptions=True)
            self._weights_task = None

    async def run(self, stop: asyncio.Event, *, max_steps: int | None = None) -> None:
        """Step once per new block until ``stop`` is set (or ``max_steps`` steps ran).

        A ledger failure (the chain node restarting or unreachable) does not end the loop: the
        step is retried after ``config.retry_s``, doubling up to ``config.max_retry_s``.
        """
        steps = 0
        delay = self.config.retry_s
        while not stop.is_set() and (max_steps is None or steps < max_steps):
            try:
                report = await self.step()
                print(report.line(), flush=True)
                steps += 1
                await self._until(stop, self._next_block())
            except LedgerError as exc:
                log.warning("ledger unavailable (%s); retrying in %g s", exc, delay)
                await self._until(stop, asyncio.sleep(delay))
                delay = min(delay * 2, self.config.max_retry_s)
                continue
            delay = self.config.retry_s

    async def _next_block(self) -> None:
        height = await self.ledger.block_height()
        with contextlib.suppress(WaitTimeout):  # a quiet chain: step again anyway
            await self.ledger.wait_for_block(height + 1, 60.0)

    @staticmethod
    async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` until it ends or ``stop`` is set; an error of ``work`` propagates."""
        waiter = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, stopper):
                task.cancel()
            await asyncio.gather(waiter, stopper, return_exceptions=True)
        if not waiter.cancelled():
            waiter.result()

    # --- one step ----------------------------------------------------------------------------

    async def step(self) -> StepReport:
        """Query a sample of miners, update scores, maybe set weights, save state."""
        ledger_mg = await self.ledger.metagraph(self.config.netuid)
        self.metrics.block.set(ledger_mg.block)
        metagraph = _validator_metagraph(ledger_mg)
        self.state.scores.retain(metagraph.identities())
        serving = [i for i in metagraph.serving_identities() if i.hotkey != self.hotkey.address]
        rng = derive_rng(self.config.secret, SAMPLING_PURPOSE, self.state.step)
        chosen = self.state.sampler.sample(serving, self.config.sample_size, rng)
        targets = {i: Target(i.hotkey, _url_of(ledger_mg, i.hotkey)) for i in chosen}
        rewards, errors, answers = await self._evaluate(targets)
        for identity, values in rewards.items():
            self.state.scores.update(identity, sum(values) / len(values))
        try:
            weights = await self._maybe_set_weights(ledger_mg, metagraph)
        except LedgerError as exc:  # the scores above still count: save them with the step
            weights = f"not set (ledger unavailable: {exc})"
        self.state.step += 1
        self.save()
        self.metrics.steps.inc()
        flat = [r for values in rewards.values() for r in values]
        return StepReport(self.state.step, ledger_mg.block, len(targets), answers, errors,
                          sum(flat) / len(flat) if flat else 0.0, weights)

    async def _evaluate(self, targets: dict[Identity, Target]
                        ) -> tuple[dict[Identity, list[float]], int, int]:
        """Challenge every target concurrently; return rewards per identity, errors, answers."""
        jobs = [self._evaluate_one(identity, target) for identity, target in targets.items()]
        results = await asyncio.gather(*jobs)
        rewards = {identity: values for identity, (values, _, _) in zip(targets, results,
                                                                        strict=True)}
        return rewards, sum(r[1] for r in results), sum(r[2] for r in results)

    async def _evaluate_one(self, identity: Identity,
                            target: Target) -> tuple[list[float], int, int]:
        info = await self._info(identity, target)
        capabilities = info.capabilities if info is not None else []
        cap = info.max_tokens if info is not None else None
        challenges = challenges_for(self.config.secret, self.state.step, identity.hotkey,
                                    capabilities, config=self.config.selection)
        results = await asyncio.gather(*(
            self.client.query(target, ROUTE_GENERATE, c.request(cap), GenerateResponse,
                              timeouts=self.config.timeouts) for c in challenges))
        values = [self._grade(c, r) for c, r in zip(challenges, results, strict=True)]
        errors = sum(1 for r in results if not r.ok)
        return values, errors, len(results) - errors

    def _grade(self, challenge: Challenge, result: QueryResult[Any]) -> float:
        outcome = outcome_of(result)
        value = score_outcome(challenge, outcome, self._reward, self._embedder)
        self.metrics.queries.labels("ok" if result.ok else result.error.kind
                                    if result.error else "error").inc()
        self.metrics.reward.observe(value)
        if result.receipt is not None and outcome.receipt_valid:
            self.state.receipts.add(result.receipt.to_bytes())
        return value

    async def _info(self, identity: Identity, target: Target) -> InfoResponse | None:
        """The miner's ``info``, cached per registration; None if it does not answer."""
        cached = self._infos.get(identity)
        if cached is not None:
            return cached
        result = await self.client.query(target, ROUTE_INFO, InfoRequest(), InfoResponse,
                                         timeouts=self.config.timeouts)
        if result.ok and result.response is not None:
            self._infos[identity] = result.response
            return result.response
        return None

    # --- weights -----------------------------------------------------------------------------

    async def _maybe_set_weights(self, ledger_mg: LedgerMetagraph, metagraph: Metagraph) -> str:
        """Start a weights job if one is due and none is in flight; return the status text."""
        task = self._weights_task
        if task is not None:
            if not task.done():
                return f"{self._weights_status} (in flight)"
            self._weights_task = None
            self._weights_status = _finished_status(task)
        job = await self._weights_job(ledger_mg, metagraph)
        if isinstance(job, str):
            return job if not self._weights_status else f"{job}; last: {self._weights_status}"
        self._weights_status = "submitted"
        self._weights_task = asyncio.ensure_future(job)
        return "submitted"

    async def _weights_job(self, ledger_mg: LedgerMetagraph,
                           metagraph: Metagraph) -> str | Coroutine[Any, Any, str]:
        """What to do about weights now: a reason text, or the coroutine that submits them."""
        try:
            subnet = await self.ledger.subnet(self.config.netuid)
            me = await self.ledger.neuron(self.config.netuid, self.hotkey.address)
        except NoSuchItemError:
            return "not registered"
        if self.state.commits:
            return self._reveal_if_due(subnet, ledger_mg.block)
        since = ledger_mg.block - max(me.last_update, self._last_weights_block)
        interval = max(self.config.weights_interval, subnet.hyperparams.weights_rate_limit)
        if me.last_update > 0 and since < interval:
            return f"next in {interval - since} blocks"
        if not me.validator_permit:
            return "waiting for a validator permit"
        limits = WeightLimits(min_allowed_weights=subnet.hyperparams.min_allowed_weights,
                              max_weight_limit=subnet.hyperparams.max_weight_limit)
        try:
            row = weights_from_scores(self.state.scores, metagraph, limits, exclude=(me.uid,))
        except WeightsError as exc:
            return f"not set ({exc})"
        return self._submit_weights(subnet, list(row.uids), list(row.u16()), ledger_mg.block)

    async def _submit_weights(self, subnet: SubnetInfo, uids: list[int], weights: list[int],
                              block: int) -> str:
        builder = TxBuilder(self.hotkey, await self.ledger.chain_id())
        nonce = (await self.ledger.account(self.hotkey.address)).next_nonce
        if subnet.hyperparams.commit_reveal:
            salt = os.urandom(16)
            tx = builder.commit_weights(self.config.netuid, uids, weights, salt, nonce=nonce)
            digest = commit_digest(self.hotkey.public_key.raw, self.config.netuid, uids,
                                   weights, salt)
            # Saved before sending: if we die right after, the reveal can still happen.
            self.state.commits.append(PendingCommit(self.config.netuid, digest, salt,
                                                    tuple(uids), tuple(weights), block))
            self.save()
            kind = "commit"
        else:
            tx = builder.set_weights(self.config.netuid, uids, weights, nonce=nonce)
            kind = "set"
        result, height = await self._send(tx, kind)
        if kind == "commit":
            pending = self.state.commits.pop()
            if result == "ok" and height is not None:
                # The reveal epoch counts from the block that included the commit.
                self.state.commits.append(PendingCommit(pending.netuid, pending.digest,
                                                        pending.salt, pending.uids,
                                                        pending.weights, height))
        if result == "ok":
            self._last_weights_block = block
        return f"{kind} {len(uids)} uids: {result}"

    def _reveal_if_due(self, subnet: SubnetInfo,
                       block: int) -> str | Coroutine[Any, Any, str]:
        commit = self.state.commits[0]
        # The reveal lands in the next block at the earliest; count the epochs that will have
        # run between the commit's inclusion and then (SPEC: reveal after reveal_period epochs).
        epochs = _epochs_between(commit.block - 1, block, subnet.netuid, subnet.hyperparams.tempo)
        period = subnet.hyperparams.reveal_period
        if epochs < period:
            return f"commit pending, reveal after {period - epochs} more epoch(s)"
        if epochs > period:
            self.state.commits.pop(0)
            return "commit expired unrevealed; will commit again"
        return self._reveal(commit, block)

    async def _reveal(self, commit: PendingCommit, block: int) -> str:
        builder = TxBuilder(self.hotkey, await self.ledger.chain_id())
        nonce = (await self.ledger.account(self.hotkey.address)).next_nonce
        tx = builder.reveal_weights(commit.netuid, commit.uids, commit.weights, commit.salt,
                                    nonce=nonce)
        result, _ = await self._send(tx, "reveal")
        if (result == "ok" or "bad_reveal" in result) and commit in self.state.commits:
            self.state.commits.remove(commit)
            self._last_weights_block = block
        return f"reveal {len(commit.uids)} uids: {result}"

    async def _send(self, tx: Any, kind: str) -> tuple[str, int | None]:
        """Submit and wait; return ("ok" or a reason text, the including block height)."""
        try:
            outcome = await submit_and_wait(self.ledger, tx, TX_TIMEOUT_S)
        except TxRejected as exc:
            self.metrics.weights.labels(kind, exc.reason.value).inc()
            return f"rejected ({exc.reason.value})", None
        except LedgerError as exc:
            self.metrics.weights.labels(kind, "error").inc()
            return f"failed ({exc})", None
        if not outcome.applied:
            reason = outcome.reason.value if outcome.reason else "unknown"
            self.metrics.weights.labels(kind, reason).inc()
            return f"rejected ({reason}: {outcome.message})", None
        self.metrics.weights.labels(kind, "ok").inc()
        return "ok", outcome.height


def _finished_status(task: asyncio.Future[str]) -> str:
    """The status text of a finished weights job; a ledger failure is a status, not a crash."""
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if isinstance(error, LedgerError):
        return f"failed ({error})"
    return task.result()  # re-raises anything else: a bug must not pass for a status


def _validator_metagraph(mg: LedgerMetagraph) -> Metagraph:
    return Metagraph(mg.uids, mg.hotkeys, mg.registered_at,
                     serving=[ep is not None for ep in mg.endpoints])


def _url_of(mg: LedgerMetagraph, hotkey: str) -> str:
    endpoint = mg.endpoints[mg.hotkeys.index(hotkey)]
    if endpoint is None:  # sampled only from serving identities
        raise LookupError(f"{hotkey} does not serve")
    return endpoint_url(endpoint.host, endpoint.port)


def _epochs_between(start: int, end: int, netuid: int, tempo: int) -> int:
    """Epoch boundaries in blocks (start, end] under the schedule (h + netuid) % tempo == 0."""
    def upto(h: int) -> int:
        return (h + netuid) // tempo
    return upto(end) - upto(start)


__all__: Sequence[str] = ("StepReport", "Validator", "ValidatorConfig", "derive_secret")
