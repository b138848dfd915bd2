"""Benchmark: the router's added latency, and tail TTFT with stragglers, with and without hedging.

    python bench/bench_router.py            # 2,000 overhead pairs; 1,500 requests per TTFT run
    python bench/bench_router.py --quick    # a smoke run (a few seconds)

Everything runs in this process on 127.0.0.1, on a dev chain in a temporary directory.

1. Added latency. One ``echo-math`` miner. Each round times a direct signed streamed call
   (``Client.stream`` of ``generate_stream``, the route the router uses) and a
   ``Router.complete`` of the same prompt, interleaved, one at a time. Reported: p50/p99 of
   both and the difference of the percentiles (targets: p50 <= 2 ms, p99 <= 5 ms added).
   Audits are off here (they run in the background after the answer and would add load).
2. Tail TTFT. Ten miners whose first token comes after a lognormal delay (median 20 ms,
   sigma 0.5: a model's prefill on a shared GPU). After a warm-up in which all are healthy (the
   router learns every miner's p95), one miner in ten becomes a straggler: +200 ms before
   every first token. Reported: p50/p99 TTFT at 16 concurrent requests, all healthy (baseline),
   with the straggler and hedging off, and with the straggler and hedging on; and extra miner
   requests (hedges and failovers) per request. Targets: with hedging, p99 <= 1.2 x the
   all-healthy p99 and <= 5 % extra requests.

Exits non-zero only when the benchmark itself is broken (a wrong answer, an error); a missed
target is printed, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from miners.admission import AdmissionConfig
from miners.backends import Delta
from miners.backends.deterministic import EchoMathBackend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol.client import Client, Target
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.testing import ChainDriver, named_key
from protocol.messages import ROUTE_GENERATE_STREAM, GenerateChunk, GenerateRequest
from protocol.ratelimit import RateLimitConfig
from router.config import AuditConfig, RouterConfig
from router.hedging import HedgeConfig
from router.router import Router

ROUTER_KEY = named_key("bench-router")
TARGET_P50_MS, TARGET_P99_MS = 2.0, 5.0
TARGET_TAIL_RATIO, TARGET_EXTRA = 1.2, 0.05


class SyntheticBackend(EchoMathBackend):
    """echo-math whose first token waits a lognormal delay (plus ``extra_s`` while straggling)."""

    def __init__(self, seed: int, median_s: float, sigma: float) -> None:
        self._rng = np.random.default_rng(seed)
        self._median, self._sigma = median_s, sigma
        self.extra_s = 0.0

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Wait, then stream the exact answer."""
        await asyncio.sleep(self._median * float(self._rng.lognormal(0.0, self._sigma))
                            + self.extra_s)
        async for delta in super().stream(request, cancelled):
            yield delta


@dataclass
class Net:
    """A dev chain whose miners are registered, serving and weighted."""

    ledger: EmbeddedLedger
    servers: list[MinerServer]


async def network(stack: AsyncExitStack, backends: list[EchoMathBackend], tmp: Path) -> Net:
    """Register ``backends`` as miners on a new dev chain, serve them, give them incentive."""
    hyper = SubnetHyperparams(tempo=2, weights_rate_limit=0, immunity_period=0, min_burn=T,
                              activity_cutoff=1000)
    names = [f"m{i}" for i in range(len(backends))]
    drv = ChainDriver.open(tmp / "chain.db", funded=("owner", "v1", *names), hyperparams=hyper)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v1", *names):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 100 * T)
    servers = []
    for name, backend in zip(names, backends, strict=True):
        server = MinerServer(named_key(f"{name}-hot"), ServerConfig(
            admission=AdmissionConfig(max_concurrent=64),
            rate_limit=RateLimitConfig(rate=1e6, burst=1e6)))
        add_model_routes(server, backend)
        await stack.enter_async_context(server)
        drv.send(f"{name}-hot", "serve", 1, "127.0.0.1", server.port, 1)
        servers.append(server)
    drv.run_to(drv.chain.subnet(1).next_epoch_block)
    uids = [drv.chain.neuron(1, named_key(f"{n}-hot").address).uid for n in names]
    drv.send("v1-hot", "set_weights", 1, uids, [1000] * len(uids))
    drv.block()
    drv.run_to(drv.chain.subnet(1).next_epoch_block)
    ledger = EmbeddedLedger(drv.chain)
    stack.push_async_callback(ledger.aclose)
    return Net(ledger, servers)


def pct(values: list[float], q: float) -> float:
    """The ``q`` percentile in milliseconds."""
    return float(np.percentile(np.array(values), q)) * 1000


async def overhead(rounds: int, tmp: Path) -> dict[str, float]:
    """Direct signed streamed call vs Router.complete on one echo-math miner, interleaved."""
    async with AsyncExitStack() as stack:
        net = await network(stack, [EchoMathBackend()], tmp)
        server = net.servers[0]
        target = Target(server.address, server.url)
        client = await stack.enter_async_context(Client(ROUTER_KEY))
        router = await stack.enter_async_context(Router(
            ledger=net.ledger, keypair=ROUTER_KEY,
            config=RouterConfig(seed=1, audit=AuditConfig(enabled=False))))
        direct, routed = [], []
        for i in range(rounds + rounds // 10):
            prompt = f"{i % 90}+{i % 7}="
            started = time.perf_counter()
            call = client.stream(target, ROUTE_GENERATE_STREAM,
                                 GenerateRequest(prompt=prompt, max_tokens=8), GenerateChunk)
            text = "".join([c.text async for c in call])
            middle = time.perf_counter()
            answer = await router.complete(prompt, max_tokens=8)
            ended = time.perf_counter()
            if text != answer.text:
                raise SystemExit(f"answers differ: {text!r} vs {answer.text!r}")
            if i >= rounds // 10:  # the first tenth warms pools and caches
                direct.append(middle - started)
                routed.append(ended - middle)
    return {"direct_p50": pct(direct, 50), "direct_p99": pct(direct, 99),
            "router_p50": pct(routed, 50), "router_p99": pct(routed, 99),
            "added_p50": pct(routed, 50) - pct(direct, 50),
            "added_p99": pct(routed, 99) - pct(direct, 99)}


async def tail(requests: int, warm_up: int, *, straggle: bool, hedging: bool,
               tmp: Path) -> dict[str, float]:
    """p50/p99 TTFT and extra miner requests over ``requests`` after a healthy warm-up."""
    backends = [SyntheticBackend(100 + i, 0.02, 0.5) for i in range(10)]
    async with AsyncExitStack() as stack:
        net = await network(stack, list(backends), tmp)
        hedge = HedgeConfig(enabled=hedging, min_delay_s=0.002)
        router = await stack.enter_async_context(Router(
            ledger=net.ledger, keypair=ROUTER_KEY,
            config=RouterConfig(seed=2, hedge=hedge, audit=AuditConfig(enabled=False))))
        ttfts: list[float] = []
        attempts = 0

        async def run(count: int, record: bool) -> None:
            nonlocal attempts
            queue = list(range(count))

            async def worker() -> None:
                nonlocal attempts
                while queue:
                    i = queue.pop()
                    started = time.perf_counter()
                    stream = router.stream(f"{i % 50}+{i % 9}=", max_tokens=8)
                    first = None
                    async for _ in stream:
                        if first is None:
                            first = time.perf_counter() - started
                    if stream.completion is None or first is None:
                        raise SystemExit("a stream ended without its completion")
                    if stream.completion.text != str(i % 50 + i % 9):
                        raise SystemExit("wrong answer in the tail benchmark")
                    if record:
                        ttfts.append(first)
                        attempts += len(stream.completion.provenance.attempts)

            await asyncio.gather(*(worker() for _ in range(16)))

        await run(warm_up, record=False)
        if straggle:
            backends[3].extra_s = 0.2
        await run(requests, record=True)
    return {"p50": pct(ttfts, 50), "p99": pct(ttfts, 99), "extra": attempts / requests - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    logging.disable(logging.ERROR)  # miners log the streams hedging cancels
    rounds, requests, warm_up = (200, 300, 200) if args.quick else (2000, 1500, 400)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = [root / n for n in ("a", "b", "c", "d")]
        for p in parts:
            p.mkdir()
        over = asyncio.run(overhead(rounds, parts[0]))
        healthy = asyncio.run(tail(requests, warm_up, straggle=False, hedging=False,
                                   tmp=parts[1]))
        plain = asyncio.run(tail(requests, warm_up, straggle=True, hedging=False, tmp=parts[2]))
        hedged = asyncio.run(tail(requests, warm_up, straggle=True, hedging=True, tmp=parts[3]))
    print(f"router added latency over a direct signed streamed call ({rounds} rounds, "
          "one echo-math miner, sequential)")
    print(f"  {'':<10}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"  {'direct':<10}{over['direct_p50']:>10.3f}{over['direct_p99']:>10.3f}")
    print(f"  {'router':<10}{over['router_p50']:>10.3f}{over['router_p99']:>10.3f}")
    met = over["added_p50"] <= TARGET_P50_MS and over["added_p99"] <= TARGET_P99_MS
    print(f"  {'added':<10}{over['added_p50']:>10.3f}{over['added_p99']:>10.3f}"
          f"   target <= {TARGET_P50_MS} / {TARGET_P99_MS}: {'met' if met else 'MISSED'}")
    print(f"\nTTFT with 1 straggler in 10 miners (+200 ms), {requests} requests at 16 "
          f"concurrent after {warm_up} healthy")
    print(f"  {'run':<26}{'p50 ms':>10}{'p99 ms':>10}{'extra req':>11}")
    for name, row in (("all healthy", healthy), ("straggler, no hedging", plain),
                      ("straggler, hedging", hedged)):
        print(f"  {name:<26}{row['p50']:>10.1f}{row['p99']:>10.1f}{row['extra'] * 100:>10.1f}%")
    ratio = hedged["p99"] / healthy["p99"]
    ok = ratio <= TARGET_TAIL_RATIO and hedged["extra"] <= TARGET_EXTRA
    print(f"  hedged p99 / healthy p99 = {ratio:.2f} (target <= {TARGET_TAIL_RATIO}), extra "
          f"{hedged['extra'] * 100:.1f} % (target <= {TARGET_EXTRA * 100:.0f} %): "
          f"{'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
