"""Keep bench/bench_wire.py working: a tiny --quick run end to end (no timing assertions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_wire.py"


def test_bench_wire_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    out_json = tmp_path / "wire.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--requests", "30", "--warmup", "10",
         "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    out = proc.stdout
    for column in ("bare req/s", "signed req/s", "ratio", "signed p50/p99 ms"):
        assert column in out, out
    for c in (1, 16):  # one table row per concurrency: C, bare req/s, signed req/s, ratio
        assert re.search(rf"^\s*{c}\s+[\d,]+\s+[\d,]+\s+[\d.]+%", out, re.MULTILINE), out
    assert "targets apply at C=64" in out  # --quick skips C=64; the table says so
    # The transport-only baseline is reported next to the aiohttp one.
    assert re.search(r"^\s*16\s+bare/http1\s+[\d,]+ req/s", out, re.MULTILINE), out

    data = json.loads(out_json.read_text())
    assert [r["concurrency"] for r in data["results"]] == [1, 16]
    for row in data["results"]:
        assert row["bare_rps"] > 0
        assert row["signed_rps"] > 0
        assert row["lean_rps"] > 0
        assert row["lean_ratio"] > 0
        assert {run["kind"] for run in row["runs"]} == {"bare", "signed", "bare/http1"}
        assert all(run["errors"] == 0 for run in row["runs"])
