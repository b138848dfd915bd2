"""Scores to the weight row a validator sets on the ledger.

Steps: look up the uid each scored identity holds now (identities no longer registered drop
out); normalise positive scores to sum 1; if fewer uids than the ledger requires have weight,
give a tiny ``floor`` weight to other uids (policy below); cap the largest share at
``max_weight_limit``, redistributing the excess over the uncapped weights in proportion, until
no weight exceeds the cap.

Policy for ``min_allowed_weights`` (and for caps that need more non-zero weights than have
scores): fill with a floor weight, serving uids first (lowest uid first), then registered uids
that do not serve, and uids in ``exclude`` (the validator's own) only as a last resort, when
the rules need every uid of a small subnet; the ledger accepts a weight on oneself. A validator
that saw at least one good miner can then always set weights; the filler shares are negligible
unless the cap itself forces more spread. :class:`WeightsError` is raised only when no score is
positive or the ledger's rules cannot be met even with every uid.

The ledger checks the u16 row in integers (``protocol.ledger.weights.validate_weights``: at
least ``min(min_allowed_weights, n)`` non-zero weights, ``max * 65535 <= max_weight_limit *
sum``); rows from here, quantised by :func:`quantize_u16`, pass both
(:func:`u16_row_is_valid` mirrors the check).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from protocol.errors import ConfigError
from validators.errors import WeightsError
from validators.metagraph import Identity, Metagraph
from validators.scores import ScoreBook

__all__ = [
    "U16_MAX",
    "WeightLimits",
    "WeightRow",
    "cap_weights",
    "quantize_u16",
    "u16_row_is_valid",
    "weights_from_scores",
]

#: Weights travel as u16 proportions; the largest weight of a row is scaled to this.
U16_MAX = 65_535
#: The cap is applied this much below the configured share: the slack (at least 0.065 u16
#: units of the row's sum) absorbs float noise and the rounding of :func:`quantize_u16`, so
#: the quantised row always passes the ledger's integer check.
_CAP_MARGIN = 1e-6
#: Scaled weights are rounded to this many decimals before rounding up, so float noise
#: (21845.000000000004 for 1/3 of 65535) does not add a unit.
_NOISE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class WeightLimits:
    """The subnet's weight rules (ledger hyperparameters) and the filler weight.

    Attributes:
        min_allowed_weights: non-zero weights a row must carry (capped at the uid count).
        max_weight_limit: the largest share of one weight, in 65535ths (65535: no cap).
        floor: weight of a filler uid relative to a total of 1 for the scored uids.
        min_score: scores below this count as 0.

    Raises:
        ConfigError: a value is out of range.
    """

    min_allowed_weights: int = 1
    max_weight_limit: int = U16_MAX
    # 1e-4 of the total: a filler quantises to a handful of u16 units, visible to the ledger
    # as non-zero, invisible in consensus next to real scores.
    floor: float = 1e-4
    # A moving average decays towards 0 but never reaches it; without a threshold every miner
    # that ever scored would keep a weight, rounded up to a u16 unit.
    min_score: float = 1e-6

    def __post_init__(self) -> None:
        if self.min_allowed_weights < 0:
            raise ConfigError("min_allowed_weights must be >= 0")
        if not 1 <= self.max_weight_limit <= U16_MAX:
            raise ConfigError(f"max_weight_limit must be in [1, {U16_MAX}]")
        if not (math.isfinite(self.floor) and 0.0 < self.floor <= 1.0):
            raise ConfigError("floor must be in (0, 1]")
        if not (math.isfinite(self.min_score) and 0.0 <= self.min_score < 1.0):
            raise ConfigError("min_score must be in [0, 1)")

    @property
    def max_share(self) -> float:
        """The cap as a fraction of the row's sum."""
        return self.max_weight_limit / U16_MAX

    def needed(self, n: int) -> int:
        """Non-zero weights a row over ``n`` uids needs: the minimum count and the cap's."""
        for_cap = -(-U16_MAX // self.max_weight_limit)  # ceil: count * share must reach 1
        return max(min(self.min_allowed_weights, n), for_cap)


@dataclass(frozen=True, slots=True)
class WeightRow:
    """A weight row: uids in increasing order and their float weights (sum 1, all > 0)."""

    uids: tuple[int, ...]
    weights: tuple[float, ...]

    def u16(self) -> list[int]:
        """The weights as u16 integers, the largest scaled to 65535 (see :func:`quantize_u16`)."""
        return quantize_u16(self.weights)


def cap_weights(weights: Sequence[float] | np.ndarray, max_share: float) -> np.ndarray:
    """Normalise ``weights`` to sum 1 and cap each at ``max_share``, iteratively.

    Each round clips the weights above the cap and spreads the excess over the uncapped
    positive weights in proportion to their size; zeros stay zero. When too few weights are
    positive for the cap (``count * max_share < 1``) the result is the best possible: every
    positive weight equal, above the cap.

    Raises:
        WeightsError: a weight is negative or not finite, or none is positive.
    """
    w = _normalised(np.asarray(weights, dtype=np.float64))
    if max_share >= 1.0:
        return w
    capped = np.zeros(w.shape, dtype=bool)
    while True:
        over = w > max_share
        if not over.any():
            return w
        capped |= over
        excess = float((w[over] - max_share).sum())
        w[over] = max_share
        free = ~capped & (w > 0.0)
        if not free.any():
            return _normalised(w)  # infeasible cap: all positive weights end equal
        w[free] += excess * w[free] / w[free].sum()


def weights_from_scores(scores: ScoreBook | Mapping[Identity, float], metagraph: Metagraph,
                        limits: WeightLimits = WeightLimits(),
                        exclude: Collection[int] = ()) -> WeightRow:
    """Build the weight row for the ledger from per-identity scores.

    Only identities that hold a uid in ``metagraph`` count; ``exclude`` uids (e.g. the
    validator's own) get no score weight, and a filler weight only when the rules need them.

    Returns:
        A row whose weights sum to 1, with at least ``limits.needed(len(metagraph))`` uids,
        each share at most ``limits.max_share``.

    Raises:
        WeightsError: no current identity has a positive score, or the rules need more
            non-zero weights than the subnet has uids.
    """
    lookup = scores.score if isinstance(scores, ScoreBook) else (lambda i: scores.get(i, 0.0))
    eligible = [(u, i) for u, i in zip(metagraph.uids, metagraph.identities(), strict=True)
                if u not in exclude]
    raw = {u: _kept(lookup(i), limits.min_score) for u, i in eligible}
    if not any(raw.values()):
        raise WeightsError(f"no registered identity has a positive score "
                           f"(at least {limits.min_score})")
    needed = limits.needed(len(metagraph))
    if needed > len(metagraph):
        raise WeightsError(f"the rules need {needed} non-zero weights but the subnet has only "
                           f"{len(metagraph)} uids")
    total = sum(raw.values())
    row = {u: s / total for u, s in raw.items() if s > 0.0}
    for uid in _fillers(metagraph, row, exclude)[:max(0, needed - len(row))]:
        row[uid] = limits.floor
    uids = sorted(row)
    capped = cap_weights([row[u] for u in uids], limits.max_share * (1.0 - _CAP_MARGIN))
    return WeightRow(tuple(uids), tuple(float(w) for w in capped))


def quantize_u16(weights: Sequence[float] | np.ndarray) -> list[int]:
    """Scale so the largest weight is 65535 and round *up* the others (to at most 65535).

    Rounding up keeps every positive weight non-zero (``min_allowed_weights`` counts
    non-zeros) and grows the sum, so the largest share stays within the float row's (up to
    float noise below 1e-6 units, which is ignored rather than rounded up). All zeros give all
    zeros.

    Raises:
        WeightsError: a weight is negative or not finite.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return []
    if not np.isfinite(w).all() or (w < 0.0).any():
        raise WeightsError("weights must be finite and non-negative")
    top = float(w.max())
    if top <= 0.0:
        return [0] * int(w.size)
    q = np.clip(np.ceil(np.round(w / top * U16_MAX, _NOISE_DECIMALS)), 0, U16_MAX)
    q[(w > 0.0) & (q < 1)] = 1  # a weight so small its quotient underflowed
    return [int(v) for v in q]


def u16_row_is_valid(u16: Sequence[int], limits: WeightLimits, n: int) -> bool:
    """Whether the ledger's integer rules accept this u16 row over a subnet of ``n`` uids."""
    positive = [v for v in u16 if v > 0]
    if len(positive) < min(limits.min_allowed_weights, n):
        return False
    return not positive or max(positive) * U16_MAX <= limits.max_weight_limit * sum(positive)


def _fillers(metagraph: Metagraph, row: Mapping[int, float], exclude: Collection[int]) -> list[int]:
    """Uids that may take a floor weight, best first: serving ones, then the rest, each by uid;
    ``exclude`` uids come last, so they are taken only when every other uid is."""
    serving = set(metagraph.serving_uids())
    free = [(u in exclude, u not in serving, u) for u in metagraph.uids if u not in row]
    return [u for *_, u in sorted(free)]


def _normalised(w: np.ndarray) -> np.ndarray:
    if not np.isfinite(w).all() or (w < 0.0).any():
        raise WeightsError("weights must be finite and non-negative")
    total = float(w.sum())
    if total <= 0.0:
        raise WeightsError("no weight is positive")
    return w / total


def _kept(score: float, min_score: float) -> float:
    return float(score) if math.isfinite(score) and score > 0.0 and score >= min_score else 0.0
