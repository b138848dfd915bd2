"""Benchmark: one validator step over many miners, and its CPU share on verification vs scoring.

    python bench/bench_validator.py            # 256 miners
    python bench/bench_validator.py --quick    # 32 miners, fewer repeats: a smoke run

Setup: a dev chain (``ChainDriver``, temporary directory) with ``max_allowed_uids=512``, one
staked validator hotkey and N registered miners, each a real :class:`MinerServer` with the
deterministic ``echo-math`` backend on 127.0.0.1, endpoints published with ``serve``
transactions. The miner servers run in a few helper subprocesses (this script with
``--serve-miners``), so the profile of this process holds the validator's work only: the
miners' request checks and receipt signing (also in ``protocol/envelope.py`` and
``protocol/keys.py``) would otherwise be counted as the validator's verification.

Measured: the wall time of ``await validator.step()`` (median of a few, after one warm-up), the
requests per step, and, from a cProfile run of one more step (CPU-time clock), the share of the
step's CPU spent in verification (``protocol/envelope.py``, ``protocol/keys.py``) vs scoring
(``validators/checkers.py``, ``validators/reward.py``, ``validators/tasks.py``) vs request
signing (the ``sign*`` functions of those two protocol files, split out of verification) vs the
rest (network, asyncio, ledger, state). The baseline is the measured cost of one Ed25519 verify
(``protocol.keys.verify`` in a loop) times the number of receipts in the step, as a share of
the step's CPU time: receipt checks cannot be switched off through the API.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from miners.backends.deterministic import EchoMathBackend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol import keys
from protocol.client import Client, Timeouts
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.testing import ChainDriver, named_key
from protocol.ratelimit import RateLimitConfig
from validators.service import Validator, ValidatorConfig, derive_secret

HEADER = (f"{'miners':>6} {'step_ms':>9} {'req/step':>8} {'cpu_ms':>8} {'verify%':>8} "
          f"{'score%':>7} {'sign%':>6} {'other%':>7} {'base%':>6}")
VERIFY_FILES = ("protocol/envelope.py", "protocol/keys.py")
SCORING_FILES = ("validators/checkers.py", "validators/reward.py", "validators/tasks.py")
TIMEOUTS = Timeouts(connect=5.0, first_byte=20.0, total=30.0)


def miner_name(i: int) -> str:
    """The coldkey name of miner ``i`` (its hotkey is ``<name>-hot``)."""
    return f"m{i}"


# --- miner helper processes -------------------------------------------------------------------


async def serve_miners(start: int, count: int) -> None:
    """Serve miners ``start .. start+count-1``; print their ports as JSON; run until stdin ends."""
    config = ServerConfig(rate_limit=RateLimitConfig(rate=10_000.0, burst=10_000.0))
    async with AsyncExitStack() as stack:
        ports = []
        for i in range(start, start + count):
            server = MinerServer(named_key(f"{miner_name(i)}-hot"), config)
            add_model_routes(server, EchoMathBackend())
            await stack.enter_async_context(server)
            ports.append(server.port)
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def start_miner_processes(n: int, procs: int) -> tuple[list[subprocess.Popen[str]], list[int]]:
    """Start ``procs`` helper processes serving ``n`` miners in all; return them and the ports."""
    per = -(-n // procs)
    children, ports = [], []
    for start in range(0, n, per):
        count = min(per, n - start)
        children.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-miners", str(start),
             str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("a miner helper process exited before printing its ports")
        ports.extend(json.loads(line))
    return children, ports


def stop_miner_processes(children: list[subprocess.Popen[str]]) -> None:
    """Close the helpers' stdin (they exit) and wait; kill any that hang."""
    for child in children:
        if child.stdin is not None:
            child.stdin.close()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --- chain ------------------------------------------------------------------------------------


def build_chain(path: Path, ports: list[int]) -> ChainDriver:
    """A dev chain with subnet 1 (512 uid slots), a staked validator and the serving miners."""
    n = len(ports)
    names = [miner_name(i) for i in range(n)]
    hyper = SubnetHyperparams(max_allowed_uids=512, immunity_period=0, min_burn=T // 1000,
                              max_burn=T, target_registrations_per_interval=4096,
                              adjustment_interval=10_000, weights_rate_limit=0,
                              activity_cutoff=10_000)
    drv = ChainDriver.open(path, funded=("owner", "v1", *names), hyperparams=hyper)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v1", *names):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 100 * T)
    for name, port in zip(names, ports, strict=True):
        drv.send(f"{name}-hot", "serve", 1, "127.0.0.1", port, 1)
    drv.block()
    served = sum(ep is not None for ep in drv.chain.metagraph(1).endpoints)
    if served != n:
        raise RuntimeError(f"only {served} of {n} miners are serving on the chain")
    return drv


# --- profile attribution ----------------------------------------------------------------------


def _in(files: tuple[str, ...]) -> Callable[[tuple[str, int, str]], bool]:
    def test(func: tuple[str, int, str]) -> bool:
        path = func[0].replace(os.sep, "/")
        return any(path.endswith(f) for f in files)
    return test


def _is_signing(func: tuple[str, int, str]) -> bool:
    return _in(VERIFY_FILES)(func) and func[2].startswith("sign")


def attribute(stats: pstats.Stats) -> dict[str, float]:
    """CPU seconds of the profiled step: total, verify, score, sign; and Ed25519 verify calls.

    A category's time is the cumulative time of its functions as entered from callers outside
    the category (nested calls within it are not counted twice). Verification is everything in
    ``protocol/envelope.py`` and ``protocol/keys.py`` except request signing (functions named
    ``sign*`` and what they call), which is reported on its own; scoring excludes the receipt
    re-checks it makes (``outcome_of`` calls ``Receipt.is_valid``), counted as verification.
    """
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    is_file, is_score = _in(VERIFY_FILES), _in(SCORING_FILES)

    def is_verify(func: tuple[str, int, str]) -> bool:
        return is_file(func) and not _is_signing(func)

    def entered(member: Callable[[tuple[str, int, str]], bool],
                caller_ok: Callable[[tuple[str, int, str]], bool]) -> float:
        spent = 0.0
        for func, (_, _, _, _, callers) in raw.items():
            if not member(func):
                continue
            for caller, (_, _, _, ct) in callers.items():
                if not member(caller) and caller_ok(caller):
                    spent += ct
        return spent

    verify_calls = sum(entry[1] for func, entry in raw.items()
                       if is_file(func) and func[2] == "verify" and func[0].endswith("keys.py"))
    return {
        "total": sum(entry[2] for entry in raw.values()),
        "verify": entered(is_verify, lambda c: not _is_signing(c)),
        "score": entered(is_score, lambda c: True) - entered(is_verify, is_score),
        "sign": entered(_is_signing, lambda c: True),
        "verify_calls": verify_calls,
    }


def verify_cost_s(repeats: int) -> float:
    """Measured seconds per ``protocol.keys.verify`` of a receipt-sized message."""
    key = named_key("bench-verify")
    message = os.urandom(120)
    signature = key.sign(message)
    public = key.public_key.raw
    for _ in range(50):
        keys.verify(public, message, signature)
    started = time.process_time()
    for _ in range(repeats):
        keys.verify(public, message, signature)
    return (time.process_time() - started) / repeats


# --- the run ----------------------------------------------------------------------------------


async def run(n: int, repeats: int, procs: int) -> int:
    children, ports = start_miner_processes(n, procs)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            drv = build_chain(Path(tmp) / "chain.db", ports)
            key = named_key("v1-hot")
            async with Client(key) as client:
                config = ValidatorConfig(netuid=1, secret=derive_secret(key),
                                         state_path=Path(tmp) / "validator.state",
                                         sample_size=256, weights_interval=10**6,
                                         timeouts=TIMEOUTS)
                validator = Validator(key, EmbeddedLedger(drv.chain), client, config)
                try:
                    warm = await validator.step()
                    if warm.queried != n:
                        raise RuntimeError(f"warm-up queried {warm.queried} of {n} miners")
                    times, cpu, reports = [], [], []
                    for _ in range(repeats):
                        started, cpu_started = time.perf_counter(), time.process_time()
                        reports.append(await validator.step())
                        times.append(time.perf_counter() - started)
                        cpu.append(time.process_time() - cpu_started)
                    profiler = cProfile.Profile(time.process_time)
                    profiler.enable()
                    profiled = await validator.step()
                    profiler.disable()
                finally:
                    await validator.aclose()
    finally:
        stop_miner_processes(children)
    # requests per step: one generate per challenge (answers + errors); info is cached after
    # the warm-up step
    requests = statistics.median(r.answers + r.errors for r in reports)
    errors = sum(r.errors for r in (*reports, profiled))
    shares = attribute(pstats.Stats(profiler))
    total = shares["total"]
    verify, score, sign = shares["verify"], shares["score"], shares["sign"]
    other = total - verify - score - sign
    receipts = profiled.answers
    per_verify = verify_cost_s(2000)
    base = per_verify * receipts
    step_ms, cpu_ms = statistics.median(times) * 1000, statistics.median(cpu) * 1000
    print(f"validator step over {n} miners (echo-math, {procs} helper processes); "
          f"{repeats} timed steps after one warm-up; shares from a cProfile of one more step")
    print(HEADER)
    print(f"{n:>6} {step_ms:>9.1f} {requests:>8.0f} {cpu_ms:>8.1f} "
          f"{100 * verify / total:>8.1f} {100 * score / total:>7.1f} {100 * sign / total:>6.1f} "
          f"{100 * other / total:>7.1f} {100 * base / cpu_ms * 1000:>6.1f}")
    print(f"cpu_ms: this process's CPU per timed step (unprofiled); shares: of the profiled "
          f"step's {total * 1000:.1f} ms CPU (profiler overhead included)")
    print(f"baseline: {per_verify * 1e6:.1f} us per Ed25519 verify x {receipts} receipts = "
          f"{base * 1000:.1f} ms = base% of cpu_ms; the profiled step made "
          f"{shares['verify_calls']} keys.verify calls for {receipts} receipts")
    print(f"last step: {profiled.line()}")
    if errors:
        print(f"warning: {errors} failed requests in the timed steps", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the benchmark (or serve miners for it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 miners, fewer repeats")
    parser.add_argument("--miners", type=int, help="number of miners (default 256; 32 quick)")
    parser.add_argument("--serve-miners", nargs=2, type=int, metavar=("START", "COUNT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_miners:
        asyncio.run(serve_miners(*args.serve_miners))
        return 0
    n = args.miners or (32 if args.quick else 256)
    if not 1 <= n <= 256:
        parser.error("--miners must be within 1..256 (the validator samples 256 per step)")
    repeats = 2 if args.quick else 5
    procs = 2 if n <= 64 else 4
    return asyncio.run(run(n, repeats, procs))


if __name__ == "__main__":
    sys.exit(main())
