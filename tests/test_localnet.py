"""``ensemble localnet start | status | stop`` runs a small network in the background and stops
it, leaving nothing running."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from protocol.localnet import Manifest, ProcessRecord, pid_alive, stop_manifest

ROOT = pathlib.Path(__file__).parents[1]


def _localnet(*args: str, home: pathlib.Path,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "200", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "protocol.cli.localnet", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=ROOT, env=env)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_start_status_stop_leaves_nothing_running(tmp_path: pathlib.Path) -> None:
    """start runs chain, two echo miners and a validator in the background; status shows them
    alive; stop ends every one of them."""
    state = tmp_path / "net"
    pids: list[int] = []
    try:
        started = _localnet("start", "--state-dir", str(state), "--echo-miners", "2",
                            "--validators", "1", "--no-gateway", home=tmp_path)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "local network running from" in started.stdout
        manifest = json.loads((state / "processes.json").read_text())
        pids = [p["pid"] for p in manifest["processes"]]
        assert [p["name"] for p in manifest["processes"]] == [
            "chain", "miner-m1", "miner-m2", "validator-v1"]
        assert manifest["chain_url"].startswith("http://127.0.0.1:")
        assert all(pid_alive(pid) for pid in pids)

        status = _localnet("status", "--state-dir", str(state), home=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "4 of 4 processes alive" in status.stdout
        for name in ("chain", "miner-m1", "miner-m2", "validator-v1"):
            assert name in status.stdout

        again = _localnet("start", "--state-dir", str(state), "--echo-miners", "1",
                          home=tmp_path)
        assert again.returncode == 1
        assert "already runs" in again.stderr

        stopped = _localnet("stop", "--state-dir", str(state), home=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "nothing left running" in stopped.stdout
        assert [pid for pid in pids if pid_alive(pid)] == []

        after = _localnet("status", "--state-dir", str(state), home=tmp_path)
        assert after.returncode == 1
        assert "0 of 4 processes alive" in after.stdout
    finally:
        if (state / "processes.json").is_file():
            stop_manifest(Manifest.read(state / "processes.json"), grace=5)


@pytest.mark.timeout(180)
def test_sigterm_during_start_stops_what_was_started(tmp_path: pathlib.Path) -> None:
    """A start killed with SIGTERM half-way (chain up, miners starting) leaves nothing running."""
    state = tmp_path / "net"
    env = {"COLUMNS": "200", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli.localnet", "start", "--state-dir", str(state),
         "--echo-miners", "1", "--validators", "0", "--no-gateway"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        for _ in range(20):  # progress lines; the miners' comes once the chain is up
            line = proc.stdout.readline()
            if "starting 1 miners" in line or not line:
                break
        assert "starting 1 miners" in line, line
        chain_pid = json.loads((state / "processes.json").read_text())["processes"][0]["pid"]
        assert pid_alive(chain_pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "every process started has been stopped" in err
        manifest = Manifest.read(state / "processes.json")
        assert [p.name for p in manifest.processes if pid_alive(p.pid)] == []
        assert not pid_alive(chain_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if (state / "processes.json").is_file():
            stop_manifest(Manifest.read(state / "processes.json"), grace=5)


def test_stop_skips_a_recycled_pid(tmp_path: pathlib.Path) -> None:
    """stop signals only processes still running the recorded command line."""
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = ProcessRecord("impostor", sleeper.pid, ["not", "what", "runs"],
                               str(tmp_path / "x.log"))
        manifest = Manifest(str(tmp_path), "", 1, "", [record])
        assert stop_manifest(manifest, grace=1) == [("impostor", "not running")]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_status_sees_through_a_recycled_pid_and_shows_whole_paths(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recorded pid now running something else is not our process: status says it is down
    (start and stop ask the same question), and long URLs and log paths are printed whole."""
    from protocol.cli.localnet import main  # noqa: PLC0415

    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    state = tmp_path / ("a-rather-long-state-directory-name-" * 2)
    state.mkdir()
    url = "http://127.0.0.1:65000/" + "x" * 60
    log = str(state / "logs" / "miner-with-a-long-name.log")
    try:
        record = ProcessRecord("impostor", sleeper.pid, ["not", "what", "runs"], log,
                               "miner", url)
        Manifest(str(state), url, 1, "", [record]).write(state / "processes.json")
        assert main(["status", "--state-dir", str(state)]) == 1
        out = capsys.readouterr().out
        assert "0 of 1 processes alive" in out
        assert url in out
        assert log in out
        assert main(["stop", "--state-dir", str(state)]) == 0
        assert sleeper.poll() is None  # never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_manifest_round_trips(tmp_path: pathlib.Path) -> None:
    """A written manifest reads back equal."""
    record = ProcessRecord("chain", 12, ["python", "-m", "x"], "/tmp/chain.log", "chain",
                           "http://127.0.0.1:1")
    manifest = Manifest(str(tmp_path), "http://127.0.0.1:1", 1, "/w", [record], None, 5.0)
    manifest.write(tmp_path / "processes.json")
    assert Manifest.read(tmp_path / "processes.json") == manifest


def test_start_never_deletes_a_directory_it_did_not_make(tmp_path: pathlib.Path) -> None:
    """A --state-dir holding other files is refused and left intact."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    started = _localnet("start", "--state-dir", str(precious), "--echo-miners", "1",
                        home=tmp_path, timeout=60)
    assert started.returncode == 1
    assert "holds no local network" in started.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
