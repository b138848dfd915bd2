"""The Yuma benchmark script keeps working: ``python bench/bench_yuma.py --quick``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_yuma.py"


def test_quick_bench_runs_and_agrees_with_the_reference() -> None:
    """The quick run exits 0, prints a row per size, and the two implementations agree."""
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                            text=True, timeout=60, check=False, cwd=BENCH.parents[1])
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line[:6].strip().isdigit()]
    assert [row[:2] for row in rows] == [["64", "16"], ["256", "64"]]
    assert all(row[-1] == "yes" for row in rows)
    assert "DISAGREE" not in result.stdout
