"""The examples run: each against real components on 127.0.0.1, no mocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from examples import app_router, custom_miner, custom_task
from miners.backends.deterministic import EchoMathBackend
from protocol.client import Client, Target
from protocol.keys import Keypair
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.testing import named_key
from protocol.messages import GenerateRequest, GenerateResponse
from tests.fault_backends import start_fleet

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "tiny-add-q99"
#: The example application's hotkey: ``named_key("app-hot")``, passed as a dev seed.
APP_SEED = hashlib.sha256(b"app-hot").hexdigest()
MINER_SEED = "07" * 32
#: Seconds a subprocess may take to start listening (torch and the model load first).
START_LIMIT_S = 15.0



def run_example(*args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m examples.<args>`` from the repository root."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


# --- app_router ------------------------------------------------------------------------------

async def test_app_router_answers_and_names_its_miners(
        tmp_path: Path, stack: AsyncExitStack, capsys: pytest.CaptureFixture[str]) -> None:
    """The application gets the right answer from registered echo-math miners and prints who
    answered; with ``ensemble`` every voter is named and agrees."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in "ab"})
    app_key = Keypair(bytes.fromhex(APP_SEED))
    assert app_key.address == named_key("app-hot").address
    fleet.driver.send("owner", "register", 1, app_key, max_burn=10 * T)
    await fleet.block()
    assert fleet.driver.chain.neuron(1, app_key.address) is not None

    best = await app_router.run("12+34=", keypair=app_key, netuid=1, ledger=fleet.ledger)
    assert best.text == "46"
    assert best.provenance.verify()
    (answer,) = best.provenance.answers
    assert answer.hotkey in {fleet.hotkey("a"), fleet.hotkey("b")}
    out = capsys.readouterr().out
    assert "answer: '46'" in out
    assert answer.hotkey in out

    voted = await app_router.run("40+2=", keypair=app_key, netuid=1, ledger=fleet.ledger,
                                 strategy="ensemble")
    assert voted.text == "42"
    assert voted.provenance.vote is not None
    assert all(a.agreed for a in voted.provenance.answers)
    out = capsys.readouterr().out
    assert "strategy ensemble" in out
    assert all(a.hotkey in out for a in voted.provenance.answers)


def test_app_router_cli_help_and_bad_seed() -> None:
    """The command line documents its options and refuses a malformed seed."""
    shown = run_example("examples.app_router", "--help")
    assert shown.returncode == 0
    for option in ("--chain", "--netuid", "--dev-seed", "--strategy"):
        assert option in shown.stdout
    assert app_router.main(["--chain", "x.db", "--dev-seed", "zz"]) == 1


@pytest.mark.parametrize("chain", ["http://127.0.0.1:1", "/nonexistent/dir/chain.db"])
def test_app_router_reports_an_unusable_chain_in_one_line(
        chain: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert app_router.main(["--chain", chain, "--dev-seed", "01" * 32]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


# --- custom_miner ----------------------------------------------------------------------------

async def test_custom_miner_serves_a_model_directory() -> None:
    """The miner subprocess serves tiny-add-q99 over the signed protocol: "12+34=" -> "46"
    with a verified receipt, and SIGTERM stops it cleanly."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.custom_miner", "--model", str(MODEL), "--port", "0",
        "--dev-seed", MINER_SEED,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), START_LIMIT_S)).decode()
        assert line.startswith("listening on "), (line, proc.returncode)
        url, address = line.removeprefix("listening on ").strip().split(" as ")
        assert address == Keypair(bytes.fromhex(MINER_SEED)).address
        async with Client(named_key("example-caller")) as client:
            result = await client.query(Target(address, url), "generate",
                                        GenerateRequest(prompt="12+34=", max_tokens=4),
                                        GenerateResponse)
        assert result.ok, result.error
        assert result.response is not None
        assert result.response.text.strip() == "46"
        assert result.receipt is not None
        assert result.receipt.is_valid()
        assert result.receipt.miner_address == address
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err.decode()
        assert "stopped" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


def test_custom_miner_refuses_a_directory_without_a_model(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           ) -> None:
    """A folder without config.json is a clear error, exit 1."""
    assert custom_miner.main(["--model", str(tmp_path), "--dev-seed", MINER_SEED]) == 1
    assert "model directory" in capsys.readouterr().err


# --- custom_task -----------------------------------------------------------------------------

SECRET = bytes(range(16))


def test_custom_task_is_deterministic_and_graded_exactly(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Challenges follow (secret, step, hotkey); right answers score 1.0, wrong ones 0.0."""
    assert custom_task.main(["--secret", SECRET.hex(), "--step", "3"]) == 0
    table = capsys.readouterr().out
    assert "count-vowels" in table
    first = custom_task.run(SECRET, 3)
    again = custom_task.run(SECRET, 3)
    assert [r.challenge.prompt for r in first] == [r.challenge.prompt for r in again]
    assert all(r.challenge.prompt in table for r in first)
    other = custom_task.run(SECRET, 4)
    assert [r.challenge.prompt for r in first] != [r.challenge.prompt for r in other]
    for row in first:
        word = row.challenge.prompt.removeprefix("vowels:").removesuffix("=")
        assert row.challenge.problem.answer == str(sum(c in "aeiou" for c in word))
        right = row.answer.strip() == row.challenge.problem.answer
        assert row.score == (1.0 if right else 0.0)
    assert {r.score for r in first} == {0.0, 1.0}
    (task,) = custom_task.build_registry()
    assert (task.name, task.capability) == ("count-vowels", "count")
    challenge = first[0].challenge
    assert challenge.check(challenge.problem.answer) == 1.0
    assert challenge.check("x" + challenge.problem.answer) == 0.0
