"""The routing-decision benchmark runs end to end in quick mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_router_decision.py"


def test_bench_quick_runs_and_reports() -> None:
    """``--quick`` exits 0 and prints both strategies' figures and the target verdict."""
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--decisions", "300"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in ("best      planner", "best      naive", "ensemble  planner",
                 "ensemble  naive"):
        assert line in out
    assert "best: speed-up p50" in out
    assert "ensemble: speed-up p50" in out
    assert "target p99 <= 500 us" in out
