"""A validator killed with ``kill -9`` resumes with its scores and pending commit (real processes).

A dev chain node, an echo-math miner and a validator each run as their own process, started
through the ``ensemble`` command line. The subnet has commit-reveal on. Once the validator has
scored the miner and committed weights it is killed with SIGKILL; the restarted validator must
load the same step and scores and reveal the commit it made before dying.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.cli.main import main
from validators.state import load_state

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"chain node listening on (http://\S+) ")
START_TIMEOUT = 60.0


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "protocol.cli.main", *args], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process the test starts; all are killed and reaped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_keeps_scores_and_pending_commit(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After SIGKILL the restarted validator has its step and scores and reveals its commit."""
    env = {**os.environ, "ENSEMBLE_WALLET_PATH": str(tmp_path / "wallets"),
           "ENSEMBLE_PASSWORD": "test-password", "HF_HUB_OFFLINE": "1"}
    for key in ("ENSEMBLE_WALLET_PATH", "ENSEMBLE_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    chain_log = tmp_path / "chain.log"
    procs.append(_spawn(["chain", "serve", "--db", str(tmp_path / "chain.db"), "--dev",
                         "--block-time", "0.3", "--port", "0"], chain_log, env))
    _wait_for(lambda: READY.search(chain_log.read_text()), START_TIMEOUT, "the chain node")
    url = READY.search(chain_log.read_text())[1]  # type: ignore[index]
    for name in ("owner", "miner", "val"):
        assert main(["wallet", "create", name, "--hotkey", "default", "--no-password-hotkey",
                     "--kdf-cost", "10"]) == 0
        assert main(["faucet", "--chain", url, "--wallet", name, "--amount", "1000"]) == 0
    assert main(["subnet", "create", "--chain", url, "--wallet", "owner"]) == 0
    assert main(["subnet", "set", "--chain", url, "--wallet", "owner", "--netuid", "1",
                 "tempo=4", "weights_rate_limit=0", "immunity_period=0", "commit_reveal=true",
                 "reveal_period=1"]) == 0
    assert main(["register", "--chain", url, "--wallet", "val", "--netuid", "1"]) == 0
    assert main(["stake", "add", "--chain", url, "--wallet", "val", "--amount", "500"]) == 0
    procs.append(_spawn(["miner", "run", "--wallet", "miner", "--chain", url, "--netuid", "1",
                         "--model", "echo-math", "--register", "--port", "0"],
                        tmp_path / "miner.log", env))
    _wait_for(lambda: "serving echo-math" in (tmp_path / "miner.log").read_text(),
              START_TIMEOUT, "the miner")
    state = tmp_path / "val.state"
    validator_args = ["validator", "run", "--wallet", "val", "--chain", url, "--netuid", "1",
                      "--state", str(state), "--weights-interval", "2", "--timeout", "2"]
    first = _spawn(validator_args, tmp_path / "val1.log", env)
    procs.append(first)

    def committed() -> bool:
        saved = load_state(state) if state.exists() else None
        return saved is not None and bool(saved.commits) and saved.step >= 3
    _wait_for(committed, 90.0, "a pending commit in the validator state")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    before = load_state(state)
    assert before is not None
    assert before.commits

    second = _spawn(validator_args, tmp_path / "val2.log", env)
    procs.append(second)
    log2 = tmp_path / "val2.log"
    _wait_for(lambda: f"(step {before.step})" in log2.read_text(), START_TIMEOUT,
              "the restarted validator to load its state")
    _wait_for(lambda: re.search(r"reveal \d+ uids: ok", log2.read_text()), 90.0,
              "the reveal of the commit made before the kill")
    after = load_state(state)
    assert after is not None
    assert after.step > before.step
    scores_before = dict(before.scores.items())
    assert set(scores_before) <= {identity for identity, _ in after.scores.items()}
