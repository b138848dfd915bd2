"""``bench/bench_miner_batching.py --quick`` runs end to end and reports a speed-up."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_quick_batching_benchmark(tmp_path: pathlib.Path) -> None:
    """The smoke run exits 0 (batched and one-at-a-time answers agree) and prints its table."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "bench/bench_miner_batching.py", "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=90,
                          check=False, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "speed-up (tokens/s, batched / one at a time)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["concurrency"] == 8
    assert report["rounds"] == 3
    assert report["forward_rows_per_pass"] > 1  # requests really shared forward passes
    assert report["batched"]["tokens_per_s"] > 0
