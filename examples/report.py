"""The demo's figures and report: incentive over epochs, the last weight matrix, a markdown page.

Pure functions over plain data (no network): the demo collects the numbers, this module draws
them with matplotlib's Agg backend (no display needed) and writes ``demo-out/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines or over ssh

import matplotlib.pyplot as plt
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class EpochPoint:
    """The miners' incentive after one epoch."""

    epoch: int
    block: int
    incentive: Mapping[str, float]


@dataclass(slots=True)
class DemoResults:
    """Everything the report shows.

    Attributes:
        miners: miner names in uid order, with their labels (model names).
        history: incentive per epoch.
        weights: the last weight matrix, rows = validators, columns = ``miners`` (sums to 1 per
            row, or all zero for a validator without weights).
        validators: row names of ``weights``.
        final: the final metagraph rows (name -> uid, incentive, trust, emission).
        accuracy: routing and single-miner accuracy (name -> fraction correct).
        claims: (claim, held) pairs.
        timings: phase -> seconds.
        routing_via: how prompts were routed (the gateway URL, or the in-process router).
    """

    miners: list[tuple[str, str]]
    history: list[EpochPoint] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    validators: list[str] = field(default_factory=list)
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    claims: list[tuple[str, bool]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    routing_via: str = ""


def is_png(path: Path) -> bool:
    """Whether ``path`` is a non-empty file starting with the PNG signature."""
    try:
        with path.open("rb") as f:
            head = f.read(len(PNG_SIGNATURE))
    except OSError:
        return False
    return head == PNG_SIGNATURE and path.stat().st_size > len(PNG_SIGNATURE)


def plot_incentive(results: DemoResults, path: Path) -> Path:
    """Draw incentive per miner over epochs into ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    epochs = [p.epoch for p in results.history]
    for name, label in results.miners:
        ax.plot(epochs, [p.incentive.get(name, 0.0) for p in results.history], marker="o",
                markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("incentive")
    ax.set_title("Incentive per miner as validators score them")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_weights(results: DemoResults, path: Path) -> Path:
    """Draw the last weight matrix (validators x miners) as a heatmap into ``path`` (PNG)."""
    matrix = np.array(results.weights or [[0.0] * len(results.miners)], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 2.2 + 0.5 * len(matrix)), dpi=100)
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(results.miners)), [label for _, label in results.miners],
                  rotation=30, ha="right", fontsize="small")
    ax.set_yticks(range(len(matrix)), results.validators or ["(none)"])
    light = matrix.max() / 2 if matrix.size else 0.0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center",
                color="black" if value > light else "white", fontsize="small")
    ax.set_title("Last revealed weights (row-normalised)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(results: DemoResults, out: Path) -> list[Path]:
    """Write both figures and ``report.md`` under ``out``; return the three paths."""
    out.mkdir(parents=True, exist_ok=True)
    incentive = plot_incentive(results, out / "incentive.png")
    weights = plot_weights(results, out / "weights.png")
    report = out / "report.md"
    report.write_text(render_markdown(results, incentive.name, weights.name))
    return [incentive, weights, report]


def render_markdown(results: DemoResults, incentive_png: str, weights_png: str) -> str:
    """The report as markdown text."""
    lines = ["# Ensemblenet demo report", "",
             f"{len(results.miners)} miners, {len(results.validators)} validators, "
             f"{len(results.history)} epochs observed.", "",
             "## Final metagraph", "",
             "| miner | uid | incentive | trust | emission (tokens) |",
             "|---|---|---|---|---|"]
    for name, label in results.miners:
        row = results.final.get(name, {})
        lines.append(f"| {label} | {int(row.get('uid', -1))} | {row.get('incentive', 0):.4f} "
                     f"| {row.get('trust', 0):.4f} | {row.get('emission', 0):.3f} |")
    lines += ["", f"![incentive per miner over epochs]({incentive_png})", "",
              f"![last weight matrix]({weights_png})", ""]
    if results.accuracy:
        lines += ["## Accuracy on held-out addition problems", "",
                  f"Routing through: {results.routing_via}", "",
                  "| answered by | accuracy |", "|---|---|"]
        lines += [f"| {name} | {value:.1%} |" for name, value in results.accuracy.items()]
        lines.append("")
    lines += ["## Claims", ""]
    lines += [f"- [{'x' if held else ' '}] {claim}" for claim, held in results.claims]
    if results.timings:
        lines += ["", "## Timings", "", "| phase | seconds |", "|---|---|"]
        lines += [f"| {phase} | {secs:.1f} |" for phase, secs in results.timings.items()]
    return "\n".join(lines) + "\n"


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (ties broken by position, as the e2e test does)."""
    ra = np.argsort(np.argsort(np.asarray(a)))
    rb = np.argsort(np.argsort(np.asarray(b)))
    if np.all(ra == ra[0]) or np.all(rb == rb[0]):
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])
