"""Which miners the router may send to: the candidate record, eligibility, per-request filters.

Eligibility comes from consensus signals only (metagraph incentive, validator-observed
quality); the router's own live measurements live in :mod:`router.health` and
:mod:`router.breaker` and never make a miner ineligible here. A :class:`CandidatePool` is an
immutable snapshot of the eligible miners with the numpy arrays routing reads, built once per
metagraph sync so that a routing decision never walks Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from protocol.errors import ConfigError, EnsembleError
from router.errors import RouterInputError

# Per-request filters repeat (a gateway serves a handful of model/capability combinations);
# past this many distinct ones the memo is dropped rather than grown without bound.
_MASK_CACHE_LIMIT = 256


def _check_unit(name: str, value: float, error: type[EnsembleError]) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise error(f"{name} must be a finite number in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One miner as the metagraph and validators describe it.

    Attributes:
        uid: the miner's slot in the subnet (display only: identity is ``hotkey``).
        hotkey: the miner's address; every live signal is keyed by it.
        url: base URL of its endpoint (``http://host:port``).
        incentive: consensus incentive, a proportion in [0, 1].
        trust: consensus trust, a proportion in [0, 1].
        quality: validator-observed answer quality in [0, 1], or ``None`` when not measured.
        capabilities: tags the miner serves (``"chat"``, ``"tools"``, ...).
        context_length: the longest context the miner accepts, in tokens.
        model: the model name the miner announces.

    Raises:
        RouterInputError: a proportion outside [0, 1], an empty hotkey, a negative context
            length, or capabilities that are not a frozenset.
    """

    uid: int
    hotkey: str
    url: str
    incentive: float = 0.0
    trust: float = 0.0
    quality: float | None = None
    capabilities: frozenset[str] = frozenset()
    context_length: int = 0
    model: str = ""

    def __post_init__(self) -> None:
        if not self.hotkey:
            raise RouterInputError("a candidate needs a hotkey")
        _check_unit("incentive", self.incentive, RouterInputError)
        _check_unit("trust", self.trust, RouterInputError)
        if self.quality is not None:
            _check_unit("quality", self.quality, RouterInputError)
        if self.context_length < 0:
            raise RouterInputError(f"context_length must be >= 0, got {self.context_length}")
        if not isinstance(self.capabilities, frozenset):
            raise RouterInputError("capabilities must be a frozenset")


@dataclass(frozen=True, slots=True)
class EligibilityConfig:
    """When consensus lets a miner receive traffic.

    A miner is eligible when ``trust >= min_trust`` and either its incentive is above
    ``min_incentive`` or validators measured its quality at ``min_quality`` or more; and, when
    ``quality_floor`` is set, never if its measured quality is below that floor (incentive lags
    quality by epochs, so a miner whose answers went bad keeps incentive for a while).
    """

    min_incentive: float = 0.0
    # Half marks: a newly registered miner without incentive yet is worth routing to once
    # validators see it answer at least as often right as wrong.
    min_quality: float = 0.5
    min_trust: float = 0.0
    quality_floor: float | None = None

    def __post_init__(self) -> None:
        _check_unit("min_incentive", self.min_incentive, ConfigError)
        _check_unit("min_quality", self.min_quality, ConfigError)
        _check_unit("min_trust", self.min_trust, ConfigError)
        if self.quality_floor is not None:
            _check_unit("quality_floor", self.quality_floor, ConfigError)


@dataclass(frozen=True, slots=True)
class Requirements:
    """What one request needs from a miner: capability tags, context length, a model name."""

    capabilities: frozenset[str] = frozenset()
    min_context: int = 0
    model: str | None = None


#: A request that needs nothing in particular (the default of every routing call).
ANY = Requirements()


def is_eligible(candidate: Candidate, config: EligibilityConfig) -> bool:
    """Whether consensus signals let ``candidate`` receive traffic (see EligibilityConfig)."""
    quality = candidate.quality
    if config.quality_floor is not None and quality is not None and quality < config.quality_floor:
        return False
    if candidate.trust < config.min_trust:
        return False
    return candidate.incentive > config.min_incentive or (
        quality is not None and quality >= config.min_quality)


def meets(candidate: Candidate, requirements: Requirements) -> bool:
    """Whether ``candidate`` serves every required tag, the context length and the model."""
    return (requirements.capabilities <= candidate.capabilities
            and candidate.context_length >= requirements.min_context
            and (requirements.model is None or candidate.model == requirements.model))


def eligible(candidates: Iterable[Candidate], config: EligibilityConfig) -> tuple[Candidate, ...]:
    """The eligible candidates, in the order given."""
    return tuple(c for c in candidates if is_eligible(c, config))


def _frozen(values: list[float]) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


class CandidatePool:
    """An immutable snapshot of the eligible miners and the arrays routing reads.

    Build one per metagraph sync; share it between requests. Position ``i`` of every array is
    ``candidates[i]``.

    Attributes:
        candidates: the eligible candidates in the order given.
        hotkeys: their hotkeys, same order.
        index: hotkey -> position.
        incentive, trust: float64 arrays (read-only).
        quality: float64 array, NaN where validators have no measurement (read-only).
        incentive_rel: incentive divided by the pool's largest (all zero if none has any).
    """

    def __init__(self, candidates: Iterable[Candidate],
                 config: EligibilityConfig = EligibilityConfig()) -> None:
        """Keep the eligible ``candidates``.

        Raises:
            RouterInputError: two candidates share a hotkey.
        """
        self.candidates = eligible(candidates, config)
        self.hotkeys = tuple(c.hotkey for c in self.candidates)
        self.index = {hotkey: i for i, hotkey in enumerate(self.hotkeys)}
        if len(self.index) != len(self.hotkeys):
            raise RouterInputError("two candidates share a hotkey")
        self.incentive = _frozen([c.incentive for c in self.candidates])
        self.trust = _frozen([c.trust for c in self.candidates])
        self.quality = _frozen([math.nan if c.quality is None else c.quality
                                for c in self.candidates])
        top = float(self.incentive.max()) if self.candidates else 0.0
        self.incentive_rel = _frozen(
            [c.incentive / top if top > 0 else 0.0 for c in self.candidates])
        self._masks: dict[Requirements, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.candidates)

    def mask(self, requirements: Requirements) -> np.ndarray:
        """A read-only boolean array: which candidates meet ``requirements`` (memoised)."""
        cached = self._masks.get(requirements)
        if cached is not None:
            return cached
        if len(self._masks) >= _MASK_CACHE_LIMIT:
            self._masks.clear()
        mask = np.fromiter((meets(c, requirements) for c in self.candidates),
                           dtype=bool, count=len(self.candidates))
        mask.setflags(write=False)
        self._masks[requirements] = mask
        return mask
