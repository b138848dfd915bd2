"""Miner batching benchmark: completion tokens/s of 8 concurrent requests, batched vs one at a time.

The issue's target: with dynamic batching, 8 concurrent ``generate`` requests to a tiny model on
CPU reach at least 3x the tokens/s of serving the same requests one at a time.

Both sides run in this process on the same loaded model: the batching backend (default
``max_batch`` and ``batch_window_ms``) answers the requests sent together with
``asyncio.gather``; the baseline is a backend with ``max_batch=1`` answering them one after the
other. The requests are greedy held-out addition problems, so both sides produce exactly the
same tokens (checked). Rounds alternate (batched, one-at-a-time, ...) so drift in machine load
hits both alike; the figures are medians over rounds. Nothing here asserts on timing: it prints.

    python bench/bench_miner_batching.py                 # 30 rounds, models/tiny-add-q99
    python bench/bench_miner_batching.py --quick         # 3 rounds (a smoke run)
    python bench/bench_miner_batching.py --model DIR --concurrency 16 --json out.json

Exit status: 0 when both sides gave identical answers, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "tiny-add-q99"


@dataclass(frozen=True, slots=True)
class Side:
    """Median figures of one side over the rounds."""

    name: str
    tokens_per_s: float
    requests_per_s: float
    round_ms: float


@dataclass(frozen=True, slots=True)
class Report:
    """The whole result (``--json`` writes it)."""

    model: str
    device: str
    concurrency: int
    rounds: int
    torch_threads: int
    batched: Side
    one_at_a_time: Side
    speedup: float
    forward_rows_per_pass: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory")
    parser.add_argument("--concurrency", type=int, default=8, help="requests sent together")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per side")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens per request")
    # One thread by default: a tiny model gains nothing from more, and on a shared machine
    # extra threads spin against other processes and swamp the measurement.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--quick", action="store_true", help="3 rounds: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> tuple[Report, bool]:
    """Load the model, run the alternating rounds, return the report and whether outputs agree."""
    import torch  # noqa: PLC0415 - keep --help instant

    from miners.backends.transformers_backend import (  # noqa: PLC0415
        TransformersBackend,
        TransformersConfig,
    )
    from miners.models import addition  # noqa: PLC0415
    from protocol.messages import GenerateRequest  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    batching = TransformersBackend.load(TransformersConfig(model_dir=str(args.model),
                                                           device=args.device))
    # Same weights, same process: only the batching differs.
    single = TransformersBackend(replace(batching.config, max_batch=1),
                                 batching._model, batching._tok)
    problems = addition.held_out_problems(args.concurrency * 4)
    never = threading.Event()
    rounds = 3 if args.quick else args.rounds
    samples: dict[str, list[tuple[float, int]]] = {"batched": [], "one": []}
    agree = True
    try:
        for r in range(rounds + 1):  # round 0 warms both sides up and is not counted
            chosen = [problems[(r * args.concurrency + i) % len(problems)]
                      for i in range(args.concurrency)]
            requests = [GenerateRequest(prompt=p.prompt, max_tokens=args.max_tokens)
                        for p in chosen]
            started = time.perf_counter()
            together = await asyncio.gather(*(batching.generate(q, never) for q in requests))
            mid = time.perf_counter()
            alone = [await single.generate(q, never) for q in requests]
            ended = time.perf_counter()
            agree &= [a.text for a in together] == [a.text for a in alone]
            if r:
                samples["batched"].append((mid - started, sum(a.completion_tokens
                                                              for a in together)))
                samples["one"].append((ended - mid, sum(a.completion_tokens for a in alone)))
        rows_per_pass = batching.forward_rows / max(1, batching.forward_passes)
    finally:
        await batching.aclose()
        await single.aclose()
    sides = {name: _side(name, samples[key], args.concurrency)
             for name, key in (("batched", "batched"), ("one at a time", "one"))}
    report = Report(model=args.model.name, device=args.device,
                    concurrency=args.concurrency, rounds=rounds,
                    torch_threads=torch.get_num_threads(), batched=sides["batched"],
                    one_at_a_time=sides["one at a time"],
                    speedup=sides["batched"].tokens_per_s / sides["one at a time"].tokens_per_s,
                    forward_rows_per_pass=rows_per_pass)
    return report, agree


def _side(name: str, samples: list[tuple[float, int]], concurrency: int) -> Side:
    seconds = statistics.median(s for s, _ in samples)
    tokens = statistics.median(t / s for s, t in samples)
    return Side(name, tokens_per_s=tokens, requests_per_s=concurrency / seconds,
                round_ms=seconds * 1000)


def print_report(report: Report) -> None:
    """The human-readable table and the ratio."""
    print(f"model {report.model} on {report.device}, {report.concurrency} concurrent greedy "
          f"requests, "
          f"{report.rounds} rounds, torch threads {report.torch_threads}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'side':<16}{'tokens/s':>12}{'requests/s':>12}{'round ms':>10}")
    for side in (report.batched, report.one_at_a_time):
        print(f"{side.name:<16}{side.tokens_per_s:>12.1f}{side.requests_per_s:>12.1f}"
              f"{side.round_ms:>10.1f}")
    print(f"rows per forward pass (batched side, warm-up included): "
          f"{report.forward_rows_per_pass:.1f}")
    print(f"speed-up (tokens/s, batched / one at a time): {report.speedup:.2f}x  (target >= 3x)")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network from a benchmark
    report, agree = asyncio.run(run(args))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    if not agree:
        print("error: batched and one-at-a-time answers differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
