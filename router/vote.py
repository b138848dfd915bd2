"""Aggregating an ensemble's answers: normalisation, weighted majority, best-of-n, first valid.

Answers are compared after :func:`normalise`, so "46.0", " 46 " and "46." are one ballot. The
outcome never depends on the order answers arrive in (weights are summed exactly with
``math.fsum``, ties are broken by the answer text, then the hotkey), except for
:meth:`VoteTally.first_valid`, whose point is arrival order. Every result carries the
full breakdown for provenance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from protocol.errors import ConfigError
from router.errors import RouterInputError

_WHITESPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TRAILING = ".,;:!?"
# Exponents past this are written out as given: "1e999999" must not become a megabyte of zeros.
_MAX_EXPONENT = 64


def _canonical_number(text: str) -> str | None:
    """``text`` as a canonical decimal ("46.0" -> "46", "1e3" -> "1000"), or None."""
    if _GROUPED.fullmatch(text):
        text = text.replace(",", "")
    elif not _NUMBER.fullmatch(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the patterns admit only valid decimals
        return None
    if value.is_zero():
        return "0"
    exponent = value.adjusted()
    if abs(exponent) > _MAX_EXPONENT:
        return None
    return format(value.normalize(), "f")


def normalise(answer: str) -> str:
    """The comparable form of an answer.

    Takes the first line of the stripped text, lowercases it, collapses whitespace, strips
    trailing sentence punctuation (``.,;:!?``), and writes numbers canonically ("46.0",
    "+46", "4.6e1" and "46." all become "46"; "1,000" becomes "1000"). Empty in, empty out.
    """
    first = answer.strip().split("\n", 1)[0]
    text = _WHITESPACE.sub(" ", first.lower()).strip()
    text = text.rstrip(_TRAILING + " ")
    number = _canonical_number(text)
    return text if number is None else number


def non_empty(normalised: str) -> bool:
    """The default validity test: a ballot needs a non-empty normalised answer."""
    return bool(normalised)


@dataclass(frozen=True, slots=True)
class Ballot:
    """One distinct (normalised) answer and who gave it.

    ``weight`` is the sum of its voters' weights (majority) or its best score (best-of-n).
    """

    answer: str
    weight: float
    hotkeys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VoteResult:
    """An aggregation's outcome and breakdown.

    Attributes:
        method: ``"majority"``, ``"best_of_n"`` or ``"first_valid"``.
        winner: the winning normalised answer, or ``None`` (no valid answer, or too few agreed).
        answer: a raw answer from the winning ballot (its heaviest voter's), for the caller.
        source: the hotkey that gave ``answer``.
        weight: the winning ballot's weight; ``total_weight``: all valid ballots' weight.
        ballots: every ballot, winner first (weight, then voters, then answer text).
        invalid: hotkeys whose answers failed the validity test, sorted.
    """

    method: str
    winner: str | None
    answer: str | None
    source: str | None
    weight: float
    total_weight: float
    ballots: tuple[Ballot, ...]
    invalid: tuple[str, ...]

    @property
    def agreeing(self) -> tuple[str, ...]:
        """Hotkeys whose answers matched the winner (empty without a winner)."""
        if self.winner is None:
            return ()
        return next(b.hotkeys for b in self.ballots if b.answer == self.winner)

    @property
    def dissenting(self) -> tuple[str, ...]:
        """Hotkeys with a valid answer other than the winner's (empty without a winner)."""
        if self.winner is None:
            return ()
        return tuple(sorted(h for b in self.ballots if b.answer != self.winner
                            for h in b.hotkeys))


@dataclass(frozen=True, slots=True)
class _Vote:
    hotkey: str
    raw: str
    normalised: str
    weight: float
    valid: bool


class VoteTally:
    """Collects one answer per miner and aggregates them.

    Args:
        normaliser: maps a raw answer to its comparable form (default :func:`normalise`).
        is_valid: whether a normalised answer counts as a ballot (default: non-empty).
        max_weight: the largest weight one answer may carry; :meth:`decided` assumes each
            answer still to come may carry this much.

    Raises:
        ConfigError: ``max_weight`` is not a finite number > 0.
    """

    def __init__(self, *, normaliser: Callable[[str], str] = normalise,
                 is_valid: Callable[[str], bool] = non_empty, max_weight: float = 1.0) -> None:
        if not (math.isfinite(max_weight) and max_weight > 0):
            raise ConfigError("max_weight must be a finite number > 0")
        self._normalise = normaliser
        self._is_valid = is_valid
        self.max_weight = max_weight
        self._votes: list[_Vote] = []
        self._voters: set[str] = set()
        self._groups: dict[str, list[_Vote]] = {}

    @property
    def answered(self) -> int:
        """Answers received, valid or not."""
        return len(self._votes)

    def add(self, hotkey: str, answer: str, weight: float) -> str:
        """Record ``hotkey``'s answer with ``weight``; returns its normalised form.

        Raises:
            RouterInputError: the miner already answered, or ``weight`` is outside
                [0, max_weight].
        """
        if hotkey in self._voters:
            raise RouterInputError(f"{hotkey} already answered")
        if not (math.isfinite(weight) and 0.0 <= weight <= self.max_weight):
            raise RouterInputError(f"weight must be in [0, {self.max_weight}], got {weight!r}")
        normalised = self._normalise(answer)
        vote = _Vote(hotkey, answer, normalised, weight, self._is_valid(normalised))
        self._voters.add(hotkey)
        self._votes.append(vote)
        if vote.valid:
            self._groups.setdefault(normalised, []).append(vote)
        return normalised

    # --- early stopping ----------------------------------------------------------------------

    def decided(self, min_agree: int, total_expected: int) -> bool:
        """Whether the majority winner is final: at least ``min_agree`` miners gave it, and the
        answers still to come (``total_expected - answered``, each up to ``max_weight``) cannot
        overtake or tie it.
        """
        ballots = self._ballots()
        if not ballots or len(ballots[0].hotkeys) < min_agree:
            return False
        remaining = max(total_expected - self.answered, 0)
        if remaining == 0:
            return True
        runner_up = ballots[1].weight if len(ballots) > 1 else 0.0
        return ballots[0].weight > math.fsum((runner_up, remaining * self.max_weight))

    def possible(self, min_agree: int, total_expected: int) -> bool:
        """Whether any answer can still reach ``min_agree`` voters (``False``: stop waiting)."""
        remaining = max(total_expected - self.answered, 0)
        most = max((len(group) for group in self._groups.values()), default=0)
        return most + remaining >= min_agree

    # --- aggregation -------------------------------------------------------------------------

    def majority(self, min_agree: int = 1) -> VoteResult:
        """Weighted majority: the ballot with the most weight (ties: more voters, then the
        smaller answer text) wins if at least ``min_agree`` miners gave it.
        """
        ballots = self._ballots()
        winner = ballots[0] if ballots and len(ballots[0].hotkeys) >= min_agree else None
        source = None
        if winner is not None:
            source = min(self._groups[winner.answer], key=lambda v: (-v.weight, v.hotkey))
        return self._result("majority", winner, source, ballots)

    def best_of(self, scorer: Callable[[str], float]) -> VoteResult:
        """Best-of-n: the valid raw answer ``scorer`` rates highest (ties: answer text, hotkey).

        An answer whose score is not finite (NaN, inf) cannot win; with no finite score there is
        no winner.
        """
        rated = [(self._rate(scorer, v), v) for g in self._groups.values() for v in g]
        best: dict[str, float] = {}
        for rating, vote in rated:
            best[vote.normalised] = max(best.get(vote.normalised, -math.inf), rating)
        ballots = sorted(
            (Ballot(answer, best[answer], tuple(sorted(v.hotkey for v in group)))
             for answer, group in self._groups.items()),
            key=lambda b: (-b.weight, b.answer))
        top = min(((r, v) for r, v in rated if r > -math.inf),
                  key=lambda rv: (-rv[0], rv[1].normalised, rv[1].hotkey), default=None)
        winner = ballots[0] if top is not None else None
        return self._result("best_of_n", winner, None if top is None else top[1], ballots)

    def first_valid(self) -> VoteResult:
        """The first valid answer to arrive wins (the fastest-answer policy)."""
        first = next((v for v in self._votes if v.valid), None)
        ballots = self._ballots()
        winner = None if first is None else next(b for b in ballots
                                                 if b.answer == first.normalised)
        return self._result("first_valid", winner, first, ballots)

    # --- internals ---------------------------------------------------------------------------

    def _ballots(self) -> list[Ballot]:
        ballots = [Ballot(answer, math.fsum(v.weight for v in group),
                          tuple(sorted(v.hotkey for v in group)))
                   for answer, group in self._groups.items()]
        ballots.sort(key=lambda b: (-b.weight, -len(b.hotkeys), b.answer))
        return ballots

    @staticmethod
    def _rate(scorer: Callable[[str], float], vote: _Vote) -> float:
        rating = float(scorer(vote.raw))
        return rating if math.isfinite(rating) else -math.inf

    def _result(self, method: str, winner: Ballot | None, source: _Vote | None,
                ballots: list[Ballot]) -> VoteResult:
        if winner is not None:
            # Winner first, the rest in their ranking order.
            ballots = [winner, *(b for b in ballots if b is not winner)]
        return VoteResult(
            method=method,
            winner=None if winner is None else winner.answer,
            answer=None if source is None or winner is None else source.raw,
            source=None if source is None or winner is None else source.hotkey,
            weight=0.0 if winner is None else winner.weight,
            total_weight=math.fsum(v.weight for g in self._groups.values() for v in g),
            ballots=tuple(ballots),
            invalid=tuple(sorted(v.hotkey for v in self._votes if not v.valid)))
