"""Per-query reward: correctness dominates, latency separates correct answers, failures earn 0."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.client import QueryResult, Target
from protocol.envelope import Receipt, sha256
from protocol.errors import ConfigError, QueryTimeout
from protocol.keys import Keypair
from protocol.messages import GenerateResponse
from validators.checkers import Problem
from validators.reward import (
    Outcome,
    RewardConfig,
    latency_factor,
    outcome_of,
    reward,
    score_outcome,
)
from validators.tasks import Challenge, default_registry

MINER = Keypair(hashlib.sha256(b"reward-miner").digest())
OTHER = Keypair(hashlib.sha256(b"reward-other").digest())
CONFIG = RewardConfig(timeout_s=10.0, latency_share=0.1)
ADD = Challenge(default_registry().get("add"), Problem("12+34=", "46"))


def good(latency_s: float = 0.0, text: str | None = "46") -> Outcome:
    """A verified outcome with ``text``."""
    return Outcome(ok=True, receipt_valid=True, text=text, latency_s=latency_s)


@pytest.mark.parametrize(("latency", "factor"), [
    (0.0, 1.0), (2.5, 0.75), (5.0, 0.5), (10.0, 0.0), (11.0, 0.0), (-1.0, 0.0),
    (math.nan, 0.0), (math.inf, 0.0),
])
def test_latency_factor(latency: float, factor: float) -> None:
    """The factor falls linearly from 1 at no latency to 0 at the timeout."""
    assert latency_factor(latency, 10.0) == factor


@pytest.mark.parametrize(("correctness", "latency", "expected"), [
    (1.0, 0.0, 1.0), (1.0, 5.0, 0.95), (1.0, 10.0, 0.9), (0.5, 0.0, 0.5),
    (0.0, 0.0, 0.0), (2.0, 0.0, 1.0), (-1.0, 0.0, 0.0), (math.nan, 0.0, 0.0),
])
def test_reward_values(correctness: float, latency: float, expected: float) -> None:
    """reward = correctness * (0.9 + 0.1 * latency_factor), correctness clamped to [0, 1]."""
    assert reward(correctness, good(latency), CONFIG) == pytest.approx(expected, abs=1e-12)


def test_slow_correct_beats_fast_wrong() -> None:
    """A correct answer at the deadline outranks a wrong answer at once."""
    assert reward(1.0, good(10.0), CONFIG) > reward(0.0, good(0.0), CONFIG) == 0.0


@pytest.mark.parametrize("outcome", [
    Outcome(ok=False, receipt_valid=False, text=None, latency_s=0.1),
    Outcome(ok=True, receipt_valid=False, text="46", latency_s=0.1),
    Outcome(ok=True, receipt_valid=True, text=None, latency_s=0.1),
    Outcome(ok=False, receipt_valid=True, text="46", latency_s=0.1),
    Outcome(ok=True, receipt_valid=True, text="46", latency_s=10.5),
    Outcome(ok=True, receipt_valid=True, text="46", latency_s=math.nan),
    Outcome(ok=True, receipt_valid=True, text="46", latency_s=-0.1),
], ids=["error", "bad-receipt", "no-text", "not-ok", "late", "nan-latency", "negative"])
def test_failures_earn_zero(outcome: Outcome) -> None:
    """Errors, timeouts, missing text and bad receipts earn 0 even for a correct answer."""
    assert reward(1.0, outcome, CONFIG) == 0.0
    assert score_outcome(ADD, outcome, CONFIG) == 0.0


def test_score_outcome_grades_then_rewards() -> None:
    """score_outcome runs the task's checker on the text, then applies the latency term."""
    assert score_outcome(ADD, good(5.0, "46\n"), CONFIG) == pytest.approx(0.95)
    assert score_outcome(ADD, good(0.0, "48"), CONFIG) == 0.0


def test_reward_config_validation() -> None:
    """A non-positive timeout or a share outside [0, 1] is a configuration error."""
    with pytest.raises(ConfigError):
        RewardConfig(timeout_s=0.0)
    with pytest.raises(ConfigError):
        RewardConfig(latency_share=1.5)


@given(correctness=st.floats(allow_nan=True, allow_infinity=True),
       latency=st.floats(allow_nan=True, allow_infinity=True),
       ok=st.booleans(), valid=st.booleans(),
       share=st.floats(0.0, 1.0), timeout=st.floats(1e-3, 1e6))
def test_reward_always_in_unit_interval(correctness: float, latency: float, ok: bool,
                                        valid: bool, share: float, timeout: float) -> None:
    """Whatever the inputs, the reward lies in [0, 1]; it is 0 unless ok and validly signed."""
    config = RewardConfig(timeout_s=timeout, latency_share=share)
    value = reward(correctness, Outcome(ok, valid, "x", latency), config)
    assert 0.0 <= value <= 1.0
    if not (ok and valid):
        assert value == 0.0


# --- from client results --------------------------------------------------------------------


RESPONSE = GenerateResponse(text="46", prompt_tokens=6, completion_tokens=2,
                            finish_reason="stop", model="adder")
TARGET = Target(MINER.address, "http://127.0.0.1:1")


def receipt_by(keypair: Keypair, status: int = 200) -> Receipt:
    """A receipt for RESPONSE signed by ``keypair``."""
    return Receipt.issue(keypair, sha256(b"request"), status, sha256(RESPONSE.encode()), 1_000)


def test_outcome_of_verified_result() -> None:
    """A verified result with the target's receipt becomes an ok, validly signed outcome."""
    result = QueryResult(TARGET, RESPONSE, receipt_by(MINER), 0.25)
    assert outcome_of(result) == Outcome(ok=True, receipt_valid=True, text="46", latency_s=0.25)
    assert score_outcome(ADD, outcome_of(result), CONFIG) == pytest.approx(0.9975)


def test_outcome_of_bad_receipts() -> None:
    """A receipt from another key, a forged signature, a non-200 status or none is invalid."""
    forged = receipt_by(MINER)
    forged = Receipt(forged.request_digest, forged.status, forged.body_digest, forged.miner,
                     forged.timestamp_ms, bytes(64))
    for receipt in (receipt_by(OTHER), forged, receipt_by(MINER, status=500), None):
        outcome = outcome_of(QueryResult(TARGET, RESPONSE, receipt, 0.25))
        assert outcome.receipt_valid is False
        assert score_outcome(ADD, outcome, CONFIG) == 0.0


def test_outcome_of_error_result() -> None:
    """A timed-out query has no text and earns 0."""
    result: QueryResult[GenerateResponse] = QueryResult(
        TARGET, None, None, 10.0, QueryTimeout("late", phase="total"))
    assert outcome_of(result) == Outcome(ok=False, receipt_valid=False, text=None,
                                         latency_s=10.0)


def test_outcome_of_bad_target_address() -> None:
    """A target whose address does not decode cannot have a valid receipt."""
    result = QueryResult(Target("not-an-address", "http://x"), RESPONSE, receipt_by(MINER), 0.1)
    assert outcome_of(result).receipt_valid is False
