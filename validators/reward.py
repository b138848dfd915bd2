"""Per-query reward in [0, 1]: correctness dominates, latency only separates correct answers.

``reward = correctness * ((1 - latency_share) + latency_share * latency_factor)`` where
``latency_factor = 1 - latency / timeout`` clipped to [0, 1]. With the default share of 0.1 a
correct but slow answer still earns 0.9 and the fastest wrong answer earns 0. Anything that is
not a verified answer (an error, a timeout, a missing or invalid receipt) earns 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from protocol.client import DEFAULT_TOTAL_S, QueryResult
from protocol.errors import AddressError, ConfigError
from protocol.messages import GenerateResponse
from validators.relevance import DEFAULT_BONUS_WEIGHT, Similarity, grade
from validators.tasks import Challenge

__all__ = [
    "Outcome",
    "RewardConfig",
    "latency_factor",
    "outcome_of",
    "reward",
    "score_outcome",
]


@dataclass(frozen=True, slots=True)
class RewardConfig:
    """How latency enters the reward.

    Attributes:
        timeout_s: the query's total deadline; answers at or past it earn latency factor 0,
            answers later than it earn nothing.
        latency_share: the share of a correct answer's reward that speed decides.

    Raises:
        ConfigError: ``timeout_s <= 0`` or ``latency_share`` outside [0, 1].
    """

    timeout_s: float = DEFAULT_TOTAL_S
    # 10 %: speed breaks ties between correct miners but never outweighs being right.
    latency_share: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError("timeout_s must be a positive number of seconds")
        if not 0.0 <= self.latency_share <= 1.0:
            raise ConfigError("latency_share must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the reward needs to know about one query (a plain view of a ``QueryResult``).

    Attributes:
        ok: a response arrived and the client verified it.
        receipt_valid: the response carries a receipt validly signed by the queried miner.
        text: the generated text, or ``None`` when there is none.
        latency_s: seconds from sending to the verified answer.
    """

    ok: bool
    receipt_valid: bool
    text: str | None
    latency_s: float


def outcome_of(result: QueryResult[Any]) -> Outcome:
    """Reduce a client result to an :class:`Outcome`, re-checking its receipt.

    The receipt must exist, state status 200, be signed by the target's key and verify. A
    response that is not a :class:`GenerateResponse` has no text.
    """
    receipt = result.receipt
    try:
        signed_by_target = receipt is not None and receipt.miner == result.target.public_key
    except AddressError:
        signed_by_target = False
    valid = signed_by_target and receipt is not None and receipt.status == 200 \
        and receipt.is_valid()
    response = result.response
    text = response.text if isinstance(response, GenerateResponse) else None
    return Outcome(ok=result.ok, receipt_valid=valid, text=text, latency_s=result.latency_s)


def latency_factor(latency_s: float, timeout_s: float) -> float:
    """``1 - latency_s / timeout_s`` clipped to [0, 1]; 0 for a negative or non-finite latency."""
    if not math.isfinite(latency_s) or latency_s < 0.0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - latency_s / timeout_s))


def _verified(outcome: Outcome, config: RewardConfig) -> bool:
    latency = outcome.latency_s
    return (outcome.ok and outcome.receipt_valid and outcome.text is not None
            and math.isfinite(latency) and 0.0 <= latency <= config.timeout_s)


def reward(correctness: float, outcome: Outcome, config: RewardConfig = RewardConfig()) -> float:
    """The reward in [0, 1] of an answer graded ``correctness`` (clamped to [0, 1]; NaN is 0).

    0 unless the outcome is ok, its receipt valid, it has text and it came within the timeout.
    """
    if not _verified(outcome, config) or not math.isfinite(correctness):
        return 0.0
    c = min(1.0, max(0.0, correctness))
    speed = latency_factor(outcome.latency_s, config.timeout_s)
    return c * ((1.0 - config.latency_share) + config.latency_share * speed)


def score_outcome(challenge: Challenge, outcome: Outcome, config: RewardConfig = RewardConfig(),
                  similarity: Similarity | None = None,
                  relevance_weight: float = DEFAULT_BONUS_WEIGHT) -> float:
    """Grade the outcome's text for ``challenge`` (hard check, then relevance gate) and reward it.

    The checker runs only on verified outcomes; anything else is 0 without grading.
    """
    if not _verified(outcome, config) or outcome.text is None:
        return 0.0
    return reward(grade(challenge, outcome.text, similarity, relevance_weight), outcome, config)
