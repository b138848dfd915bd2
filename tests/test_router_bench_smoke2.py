"""Keep bench/bench_router.py working: a --quick run end to end (no timing assertions)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_router.py"


def test_bench_router_quick_runs_and_prints_both_tables() -> None:
    """The quick run exits 0 and prints the overhead table and the three TTFT runs."""
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert re.search(r"^\s+added\s+-?[\d.]+\s+-?[\d.]+", out, re.MULTILINE), out
    for run in ("all healthy", "straggler, no hedging", "straggler, hedging"):
        assert re.search(rf"^\s+{run}\s+[\d.]+\s+[\d.]+\s+[\d.]+%", out, re.MULTILINE), out
    assert "hedged p99 / healthy p99" in out
