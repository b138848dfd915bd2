"""What every routed answer says about where it came from: miners, scores, the vote, receipts.

A :class:`Completion` is the router's answer; its :class:`Provenance` names every miner that
took part (uid and hotkey), its routing score and vote weight, what it answered, whether it
agreed with the winner, and the signed receipt of its answer, kept as ``Receipt.to_bytes()`` so
anyone can verify it later with ``Receipt.from_bytes(data).is_valid()``. Attempts that gave no
answer (timeouts, errors, lost hedges) are listed too. Values are frozen; ``to_dict`` gives the
JSON form the gateway puts in its ``ensemble`` extension field.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from protocol.envelope import Receipt
from protocol.errors import ReceiptError
from protocol.keys import encode_address

__all__ = ["AttemptRecord", "BallotRecord", "Completion", "MinerAnswer", "Provenance", "Usage",
           "VoteRecord"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One request sent to one miner.

    Attributes:
        uid, hotkey: the miner.
        role: ``primary``, ``hedge``, ``failover``, ``resume``, ``member`` (of an ensemble),
            ``replacement`` (of a failed member) or ``audit``.
        outcome: ``ok``, ``error``, ``timeout``, ``cut`` (failed after text arrived),
            ``lost_hedge`` or ``cancelled`` (no longer needed).
        detail: the error kind and message, or ``""``.
        ttft_s: seconds to its first chunk, or ``None``.
        elapsed_s: seconds from sending to the outcome.
        chars: characters of its text the caller received.
    """

    uid: int
    hotkey: str
    role: str
    outcome: str
    detail: str
    ttft_s: float | None
    elapsed_s: float
    chars: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"uid": self.uid, "hotkey": self.hotkey, "role": self.role,
                "outcome": self.outcome, "detail": self.detail,
                "ttft_ms": None if self.ttft_s is None else round(self.ttft_s * 1000, 3),
                "elapsed_ms": round(self.elapsed_s * 1000, 3), "chars": self.chars}


@dataclass(frozen=True, slots=True)
class MinerAnswer:
    """One verified answer (or, for a resumed stream, one segment of the answer).

    Attributes:
        uid, hotkey: the miner.
        score: its routing score when the request was planned.
        weight: its vote weight (standing cut by its wrong-answer rate).
        text: the text it answered.
        normalised: the comparable form the vote used (``""`` when there was no vote).
        agreed: whether it matched the winner (``None`` without a vote).
        receipt: the signed receipt of its answer, ``Receipt.to_bytes()``.
    """

    uid: int
    hotkey: str
    score: float
    weight: float
    text: str
    normalised: str
    agreed: bool | None
    receipt: bytes

    def verified_receipt(self) -> Receipt:
        """The receipt, parsed and checked: valid signature by this answer's hotkey.

        Raises:
            ReceiptError: malformed, invalid, or signed by another miner.
        """
        receipt = Receipt.from_bytes(self.receipt)
        if not receipt.is_valid():
            raise ReceiptError("receipt signature is invalid")
        if encode_address(receipt.miner) != self.hotkey:
            raise ReceiptError(f"receipt signed by {receipt.miner_address}, not {self.hotkey}")
        return receipt

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (receipt in standard base64)."""
        return {"uid": self.uid, "hotkey": self.hotkey, "score": round(self.score, 6),
                "weight": round(self.weight, 6), "text": self.text,
                "normalised": self.normalised, "agreed": self.agreed,
                "receipt": base64.b64encode(self.receipt).decode()}


@dataclass(frozen=True, slots=True)
class BallotRecord:
    """One distinct answer of a vote, its total weight and who gave it."""

    answer: str
    weight: float
    hotkeys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """How an ensemble's (or an audit's) answers became one.

    Attributes:
        method: ``majority``, ``best_of_n`` or ``first_valid``.
        winner: the winning normalised answer (``None``: no valid answer).
        agreed: whether at least ``min_agree`` miners gave the winner.
        weight, total_weight: the winner's weight and every valid ballot's.
        ballots: every ballot, winner first.
        stopped_early: whether members still running were cancelled once the vote was decided.
    """

    method: str
    winner: str | None
    agreed: bool
    weight: float
    total_weight: float
    ballots: tuple[BallotRecord, ...]
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"method": self.method, "winner": self.winner, "agreed": self.agreed,
                "weight": round(self.weight, 6), "total_weight": round(self.total_weight, 6),
                "ballots": [{"answer": b.answer, "weight": round(b.weight, 6),
                             "hotkeys": list(b.hotkeys)} for b in self.ballots],
                "stopped_early": self.stopped_early}


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an answer came from.

    Attributes:
        request_id: the router's id of the request.
        strategy: ``best``, ``weighted`` or ``ensemble``.
        primary: ``(uid, hotkey)`` of the first miner planned (the primary traffic).
        answers: the verified answers used: the winner's and every voter's for an ensemble; the
            segments of the text in order for a single answer (several after a resume).
        vote: the vote, for an ensemble; ``None`` otherwise.
        attempts: every request sent, in the order sent.
        block: the metagraph block the plan was made from.
    """

    request_id: str
    strategy: str
    primary: tuple[int, str]
    answers: tuple[MinerAnswer, ...]
    vote: VoteRecord | None
    attempts: tuple[AttemptRecord, ...]
    block: int

    @property
    def miners(self) -> tuple[tuple[int, str], ...]:
        """``(uid, hotkey)`` of every miner whose answer was used, without repeats."""
        seen: dict[str, int] = {}
        for answer in self.answers:
            seen.setdefault(answer.hotkey, answer.uid)
        return tuple((uid, hotkey) for hotkey, uid in seen.items())

    def verify(self) -> bool:
        """Whether every answer's receipt is valid and signed by that answer's miner."""
        try:
            for answer in self.answers:
                answer.verified_receipt()
        except ReceiptError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the gateway's ``ensemble`` field)."""
        return {"request_id": self.request_id, "strategy": self.strategy,
                "block": self.block,
                "primary": {"uid": self.primary[0], "hotkey": self.primary[1]},
                "miners": [{"uid": u, "hotkey": h} for u, h in self.miners],
                "answers": [a.to_dict() for a in self.answers],
                "vote": None if self.vote is None else self.vote.to_dict(),
                "attempts": [a.to_dict() for a in self.attempts]}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of an answer as the miners reported them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """The router's answer to one request.

    Attributes:
        text: the answer.
        finish_reason: ``stop`` or ``length``.
        usage: token counts.
        model: the model name the answering miner reported.
        provenance: who answered, their scores, the vote and the receipts.
    """

    text: str
    finish_reason: str
    usage: Usage
    model: str
    provenance: Provenance
