"""``make demo --quick`` runs a whole network, checks its claims and leaves nothing running."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLAIMS = (
    "claim held: signed queries verified; tampered and replayed requests refused",
    "claim held: incentive order matches graded quality",
    "claim held: garbage miner incentive",
    "claim held: report files exist; the figures are non-empty PNGs",
    "claim held: every process the demo started",
    "all checks passed",
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_demo_exits_zero_with_claims_report_and_no_process_left(
        tmp_path: pathlib.Path) -> None:
    """The quick demo exits 0, prints every claim held, writes real PNGs and a report, and
    every process in its manifest is gone."""
    out = tmp_path / "demo-out"
    env = {"COLUMNS": "160", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "examples.demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for claim in CLAIMS:
        assert claim in proc.stdout, proc.stdout[-6000:]
    for name in ("incentive.png", "weights.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 1000
    report = (out / "report.md").read_text()
    assert "![incentive per miner over epochs](incentive.png)" in report
    assert "routing: best" in report
    manifest = json.loads((out / "processes.json").read_text())
    names = [p["name"] for p in manifest["processes"]]
    assert names[:2] == ["echo-miner", "chain"]
    assert {"validator-v1", "validator-v2", "miner-q99", "miner-garbage"} <= set(names)
    assert [p["name"] for p in manifest["processes"] if _alive(p["pid"])] == []
    assert all((out / "logs" / f"{name}.log").is_file() for name in names)
