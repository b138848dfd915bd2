"""Per-identity moving averages of rewards: what a validator believes each miner is worth.

Keyed by :class:`~validators.metagraph.Identity` (hotkey, registration block), so a uid that
changes hands, or a hotkey that registers again, starts from zero. Never keyed by uid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from protocol.errors import ConfigError
from validators.errors import ValidatorStateError
from validators.metagraph import Identity

__all__ = ["DEFAULT_ALPHA", "ScoreBook"]

#: Weight of the newest reward. 0.1 forgets a reward's influence by half in about 7 updates
#: (a few epochs at the default sampling rate), so one bad query does not sink a miner.
DEFAULT_ALPHA = 0.1


class ScoreBook:
    """Exponential moving averages ``s <- (1 - alpha) * s + alpha * reward``, starting at 0.

    Raises:
        ConfigError: ``alpha`` is outside (0, 1].
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA,
                 scores: Mapping[Identity, float] | None = None) -> None:
        if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise ConfigError("alpha must be in (0, 1]")
        self._alpha = float(alpha)
        self._scores: dict[Identity, float] = {}
        for identity, score in (scores or {}).items():
            self._scores[identity] = _unit(score)

    @property
    def alpha(self) -> float:
        """The weight of the newest reward."""
        return self._alpha

    def update(self, identity: Identity, reward: float) -> float:
        """Fold ``reward`` (clamped to [0, 1]; NaN counts as 0) into the average; return it.

        Call once per identity per step, with the mean reward of that step's challenges.
        """
        old = self._scores.get(identity, 0.0)
        new = (1.0 - self._alpha) * old + self._alpha * _unit(reward)
        self._scores[identity] = new
        return new

    def score(self, identity: Identity) -> float:
        """The current average of ``identity`` (0 for one never scored)."""
        return self._scores.get(identity, 0.0)

    def retain(self, identities: Iterable[Identity]) -> int:
        """Forget every identity not in ``identities`` (e.g. deregistered); return how many."""
        keep = set(identities)
        gone = [i for i in self._scores if i not in keep]
        for identity in gone:
            del self._scores[identity]
        return len(gone)

    def items(self) -> list[tuple[Identity, float]]:
        """All ``(identity, score)`` pairs, sorted by identity."""
        return sorted(self._scores.items())

    def __len__(self) -> int:
        return len(self._scores)

    def __iter__(self) -> Iterator[Identity]:
        return iter(sorted(self._scores))

    def __contains__(self, identity: object) -> bool:
        return identity in self._scores

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreBook):
            return NotImplemented
        return self._alpha == other._alpha and self._scores == other._scores

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        """A plain, msgpack-able dict: ``{"alpha": a, "scores": [[hotkey, block, score], ...]}``.

        Deterministic: rows are sorted by identity.
        """
        return {"alpha": self._alpha,
                "scores": [[i.hotkey, i.registered_at, s] for i, s in self.items()]}

    @classmethod
    def from_dict(cls, data: Any) -> ScoreBook:
        """Rebuild a book from :meth:`to_dict` output.

        Raises:
            ValidatorStateError: a field is missing, of the wrong type or out of range, or an
                identity appears twice.
        """
        if not isinstance(data, dict) or not isinstance(data.get("scores"), list):
            raise ValidatorStateError("scores: expected a map with a 'scores' list")
        alpha: Any = data.get("alpha")
        if not _is_number(alpha) or not 0.0 < alpha <= 1.0:
            raise ValidatorStateError("scores: alpha must be a number in (0, 1]")
        scores: dict[Identity, float] = {}
        for row in data["scores"]:
            identity, score = _score_row(row)
            if identity in scores:
                raise ValidatorStateError(f"scores: {identity} appears twice")
            scores[identity] = score
        return cls(alpha, scores)


def _score_row(row: Any) -> tuple[Identity, float]:
    if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
            and _is_int(row[1]) and row[1] >= 0 and _is_number(row[2])
            and 0.0 <= row[2] <= 1.0):
        raise ValidatorStateError(f"scores: bad row {row!r:.80}")
    return Identity(row[0], row[1]), float(row[2])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value))) if math.isfinite(value) else 0.0
