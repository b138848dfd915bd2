"""Answer quality through the router, with the graded tiny addition models as miners."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests must never reach for the network
pytest.importorskip("torch")
pytest.importorskip("transformers")

from miners.backends import Backend
from miners.backends.faulty import GarbageBackend
from miners.backends.registry import BackendOptions, load_backend
from miners.models import addition
from protocol.client import Client, Target
from protocol.messages import ROUTE_GENERATE, GenerateRequest, GenerateResponse
from router.config import RouterConfig
from router.router import Router
from tests.fault_backends import ROUTER_KEY, Fleet, start_fleet

MODELS = Path(__file__).parents[1] / "models"
GRADES = ("tiny-add-q10", "tiny-add-q60", "tiny-add-q90", "tiny-add-q99")
PROBLEMS = 120
WARM_UP = 150
# Four of the five miners vote: with three, two mediocre models that share a wrong answer
# (they come from one training run) now and then outvote the near-perfect one.
ENSEMBLE_K = 4
CONCURRENCY = 8


@pytest.fixture
async def graded(tmp_path: Path) -> AsyncIterator[tuple[Fleet, Router]]:
    """The four graded models and a fast wrong miner on a dev chain, and a router over them."""
    async with AsyncExitStack() as stack:
        backends: dict[str, Backend] = {}
        for name in GRADES:
            backend = load_backend(str(MODELS / name), BackendOptions(capabilities=("math",),
                                                                      max_batch=16))
            stack.push_async_callback(backend.aclose)
            backends[name] = backend
        backends["garbage"] = GarbageBackend()
        fleet = await start_fleet(tmp_path, stack, backends, max_concurrent=16)
        router = await stack.enter_async_context(Router(
            ledger=fleet.ledger, keypair=ROUTER_KEY, config=RouterConfig(seed=5)))
        yield fleet, router


async def bounded(jobs: list[object]) -> list[object]:
    """Run coroutines ``CONCURRENCY`` at a time, results in order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: object) -> object:
        async with gate:
            return await job  # type: ignore[misc]

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def test_ensemble_is_at_least_as_accurate_as_the_best_single_miner(
        graded: tuple[Fleet, Router]) -> None:
    """On held-out a+b problems, the ensemble is right at least as often as the best miner
    asked alone (direct signed calls on the same problems)."""
    fleet, router = graded
    problems = addition.held_out_problems(PROBLEMS)
    single: dict[str, float] = {}
    async with Client(ROUTER_KEY) as client:
        for name in (*GRADES, "garbage"):
            target = Target(fleet.hotkey(name), fleet.urls[name])
            results = await bounded([client.query(
                target, ROUTE_GENERATE, GenerateRequest(prompt=p.prompt, max_tokens=8),
                GenerateResponse) for p in problems])
            single[name] = sum(r.ok and addition.is_correct(p, r.response.text)  # type: ignore[union-attr]
                               for p, r in zip(problems, results, strict=True)) / PROBLEMS
    # The router learns whom to trust from agreement alone (it never sees the answers): a
    # warm-up on training problems, as a router that has served traffic before would have.
    warm_up = addition.split()[0][:WARM_UP]
    await bounded([router.complete(p.prompt, strategy="ensemble", k=ENSEMBLE_K, max_tokens=8)
                   for p in warm_up])
    answers = await bounded([router.complete(p.prompt, strategy="ensemble", k=ENSEMBLE_K,
                                             max_tokens=8) for p in problems])
    ensemble = sum(addition.is_correct(p, a.text)  # type: ignore[attr-defined]
                   for p, a in zip(problems, answers, strict=True)) / PROBLEMS
    best = max(single.values())
    print(f"\nsingle miners {single}, ensemble {ensemble:.3f}")
    assert ensemble >= best, (ensemble, single)


async def test_fast_wrong_miner_loses_primary_traffic_under_best(
        graded: tuple[Fleet, Router]) -> None:
    """Under ``best``, audits catch the fast wrong miner: it gets < 5 % of 200 requests'
    primary traffic, although it answers fastest."""
    fleet, router = graded
    problems = addition.held_out_problems(200)
    primaries: Counter[str] = Counter()
    for problem in problems:  # one at a time, as a latency-driven balancer would be tested
        answer = await router.complete(problem.prompt, strategy="best", max_tokens=8)
        primaries[fleet.name_of(answer.provenance.primary[1])] += 1
        await router.audits_idle()
    print(f"\nprimary traffic {dict(primaries)}")
    assert primaries["garbage"] < 0.05 * len(problems), primaries
    assert router.health.snapshot(fleet.hotkey("garbage")).wrong_rate > 0.3
