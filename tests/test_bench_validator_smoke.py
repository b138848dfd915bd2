"""The validator benchmark script keeps working: ``python bench/bench_validator.py --quick``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_validator.py"


def test_quick_bench_runs_and_prints_the_table() -> None:
    """The quick run (32 miners) exits 0 and prints the table header and one row."""
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                            text=True, timeout=60, check=False, cwd=BENCH.parents[1])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next((line for line in lines if line.split()[:1] == ["miners"]), None)
    assert header is not None, result.stdout
    assert header.split() == ["miners", "step_ms", "req/step", "cpu_ms", "verify%", "score%",
                              "sign%", "other%", "base%"]
    rows = [line.split() for line in lines if line.split()[:1] == ["32"]]
    assert len(rows) == 1, result.stdout
    assert int(rows[0][2]) > 0  # requests per step
