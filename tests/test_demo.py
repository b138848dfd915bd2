"""``make demo`` works end to end and leaves nothing running."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def test_demo_exits_zero_and_reports_checks() -> None:
    """The demo starts a miner process, verifies receipts, shows refusals and exits 0."""
    proc = subprocess.run([sys.executable, "-m", "examples.demo"], capture_output=True,
                          text=True, timeout=90, check=False, cwd=ROOT,
                          env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout
    assert "miner stopped (exit code 0)" in proc.stdout
