"""Benchmark: the vectorised Yuma epoch against a straightforward per-column reference.

    python bench/bench_yuma.py            # n = 256 (64 validators) and n = 4096 (256 validators)
    python bench/bench_yuma.py --quick    # small sizes, few repeats: a smoke run

The reference below is a literal, dense (n x n) transcription of YUMA.md §3 (Yuma2 only) that
finds the stake-weighted kappa-median with a Python loop over columns. Both run in this process on
the same inputs; the script checks they agree within the vectors' tolerance and prints median
times, the speed-up and the targets. It exits 1 if the two disagree; a missed time target is
only reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.consensus import YumaOutput, YumaParams, yuma_epoch

RTOL, ATOL = 1e-6, 1e-9  # the tolerance of the reference vectors (YUMA.md §0)


@dataclass(frozen=True)
class Size:
    """One benchmark size and its time target for yuma_epoch (None: no target)."""

    n: int
    validators: int
    target_ms: float | None


FULL_SIZES = (Size(256, 64, 2.0), Size(4096, 256, 100.0))
QUICK_SIZES = (Size(64, 16, None), Size(256, 64, None))


# --- the reference ----------------------------------------------------------------------------


def _normalize(x: np.ndarray) -> np.ndarray:
    total = x.sum()
    return x / total if total != 0 else x


def _col_normalize(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=0)
    return m / np.where(sums != 0, sums, 1.0)


def reference_median(weights: np.ndarray, a: np.ndarray, kappa: float) -> np.ndarray:
    """§3.6 one column at a time: sort the column, walk the cumulative stake."""
    n = weights.shape[1]
    voters = np.flatnonzero(a > 0)
    consensus = np.zeros(n)
    if voters.size == 0:
        return consensus
    share = a[voters] / a[voters].sum()
    minority = share.sum() - kappa
    for j in range(n):
        scores = weights[voters, j]
        order = np.argsort(scores)
        cumulative = np.cumsum(share[order])
        above = np.flatnonzero(cumulative > minority)
        consensus[j] = scores[order[above[0]]] if above.size else scores.max()
    return consensus


def reference_epoch(W: np.ndarray, S: np.ndarray, p: YumaParams, *, validator_permit: np.ndarray,
                    bonds_prev: np.ndarray, last_update: np.ndarray,
                    block_at_registration: np.ndarray, current_block: int) -> dict[str, Any]:
    """A dense n x n Yuma2 epoch, step by step as YUMA.md §3 writes it."""
    if p.yuma3:
        raise NotImplementedError("the reference covers Yuma2 only")
    n = S.shape[0]
    owner = p.owner_uid
    active = ~(last_update + p.activity_cutoff < current_block)
    s = S.copy()
    for i in range(n):
        if s[i] < p.stake_threshold and i != owner:
            s[i] = 0.0
    stake = _normalize(s)
    permit = validator_permit.copy()
    new_permit = stake != 0
    if n >= p.max_allowed_validators:
        new_permit[np.argsort(stake, kind="stable")[: n - p.max_allowed_validators]] = False
    if owner is not None:
        permit[owner] = new_permit[owner] = True
    active_stake = _normalize(np.where(active & permit, stake, 0.0))

    weights = W.copy()
    weights[~permit] = 0.0
    for i in range(n):
        if i != owner:
            weights[i, i] = 0.0
    weights[last_update[:, None] <= block_at_registration[None, :]] = 0.0
    sums = weights.sum(axis=1, keepdims=True)
    weights /= np.where(sums > 0, sums, 1.0)

    consensus = reference_median(weights, active_stake, p.kappa)
    clipped = np.minimum(weights, consensus[None, :])
    ranks = active_stake @ clipped
    incentive = _normalize(ranks)

    purchase = weights + p.bonds_penalty * (clipped - weights)
    bonds = bonds_prev.copy()
    bonds[:, block_at_registration >= max(current_block - p.tempo, 0)] = 0.0
    alpha = 1.0 - p.bonds_moving_average
    delta = _col_normalize(purchase * active_stake[:, None])
    ema = _col_normalize(alpha * delta + (1.0 - alpha) * _col_normalize(bonds))
    dividends = _normalize(ema @ incentive)
    ema[~new_permit] = 0.0

    epoch_emission = p.subnet_emission * (1.0 - p.owner_cut)
    total = (incentive + dividends).sum()
    if total != 0:
        server, validator = epoch_emission * incentive / total, epoch_emission * dividends / total
    else:
        fallback = active_stake if active_stake.sum() != 0 else stake
        server, validator = np.zeros(n), epoch_emission * fallback
    return {"stake": stake, "active": active, "active_stake": active_stake,
            "new_validator_permit": new_permit, "consensus": consensus,
            "validator_trust": clipped.sum(axis=1), "incentive": incentive,
            "dividends": dividends, "bonds": ema, "server_emission": server,
            "validator_emission": validator, "weights_normalized": weights,
            "clipped_weights": clipped}


# --- inputs, comparison, timing ---------------------------------------------------------------


def make_inputs(size: Size, seed: int = 0) -> dict[str, Any]:
    """Validators (uids 0..v-1) score miners around a shared quality, with noise and gaps;
    everyone else has a little stake; the previous bonds sit on the validators' rows."""
    rng = np.random.default_rng(seed)
    n, v = size.n, size.validators
    quality = rng.lognormal(0.0, 1.0, n)
    W = np.zeros((n, n))
    W[:v] = quality * rng.lognormal(0.0, 0.3, (v, n)) * (rng.random((v, n)) < 0.8)
    S = rng.random(n) * 0.01
    S[:v] = rng.lognormal(5.0, 1.5, v)
    bonds = np.zeros((n, n))
    bonds[:v] = rng.random((v, n))
    permit = np.zeros(n, dtype=np.bool_)
    permit[:v] = True
    return {"W": W, "S": S, "validator_permit": permit, "bonds_prev": bonds,
            "last_update": rng.integers(9_000, 10_000, n),
            "block_at_registration": rng.integers(0, 9_800, n), "current_block": 10_000}


def worst_deviation(out: YumaOutput, reference: dict[str, Any]) -> float:
    """Largest |actual - expected| / (atol + rtol |expected|) over the reference's fields;
    <= 1 means agreement within the vectors' tolerance (booleans must match exactly)."""
    worst = 0.0
    for name, want in reference.items():
        got = np.asarray(getattr(out, name))
        if want.dtype == np.bool_:
            worst = max(worst, 0.0 if np.array_equal(got, want) else np.inf)
        else:
            worst = max(worst, float(np.max(np.abs(got - want) / (ATOL + RTOL * np.abs(want)))))
    return worst


def median_ms(func: Callable[[], object], repeats: int) -> float:
    func()  # warm-up: first-touch allocations, imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(sizes: tuple[Size, ...], repeats: int, reference_repeats: int) -> bool:
    """Time and compare every size, print the table; True if all sizes agree."""
    print(f"Yuma epoch (Yuma2, float64), numpy {np.__version__}; median of {repeats} runs "
          f"(reference: {reference_repeats})")
    header = (f"{'uids':>6} {'validators':>10} {'yuma_epoch':>12} {'reference':>12} "
              f"{'speed-up':>9} {'target':>14}  {'agrees':>6}")
    print(header)
    print("-" * len(header))
    all_agree = True
    for size in sizes:
        inputs = make_inputs(size)
        params = YumaParams(max_allowed_validators=max(size.validators, 1))
        W, S = inputs.pop("W"), inputs.pop("S")
        out = yuma_epoch(W, S, params, **inputs)
        deviation = worst_deviation(out, reference_epoch(W, S, params, **inputs))
        agrees = deviation <= 1.0
        all_agree &= agrees
        fast = median_ms(partial(yuma_epoch, W, S, params, **inputs), repeats)
        slow = median_ms(partial(reference_epoch, W, S, params, **inputs), reference_repeats)
        target = "-" if size.target_ms is None else (
            f"<= {size.target_ms:g} ms " + ("ok" if fast <= size.target_ms else "MISS"))
        print(f"{size.n:>6} {size.validators:>10} {fast:>9.2f} ms {slow:>9.1f} ms "
              f"{slow / fast:>8.1f}x {target:>14}  {'yes' if agrees else 'NO':>6}")
    return all_agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args(argv)
    if args.quick:
        agree = run(QUICK_SIZES, repeats=3, reference_repeats=1)
    else:
        agree = run(FULL_SIZES, repeats=21, reference_repeats=3)
    if not agree:
        print("yuma_epoch and the reference DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
