"""Subnet hyperparameters: one frozen, validated value per subnet, and the table of their bounds.

:data:`HYPERPARAM_SPECS` is the single source of truth for every field's type, default, bounds
and whether the subnet owner may change it (docs/spec-ledger.md §8 reproduces it). Its order is
the canonical encoding order of :meth:`SubnetHyperparams.to_wire`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.ledger.errors import DecodeError, HyperparamError
from protocol.ledger.units import U16_ONE, UNITS_PER_TOKEN

__all__ = ["HYPERPARAM_SPECS", "HyperparamValue", "ParamSpec", "SubnetHyperparams"]

HyperparamValue = int | float | bool


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One hyperparameter: its name, Python type, inclusive bounds and who may set it."""

    name: str
    kind: type
    low: int | float
    high: int | float
    owner_settable: bool
    doc: str


_T = UNITS_PER_TOKEN
HYPERPARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("tempo", int, 1, 50_400, True, "blocks between two epochs of the subnet"),
    ParamSpec("kappa", float, 0.25, 0.75, True,
              "stake fraction that defines consensus; outside [0.25, 0.75] clipping stops "
              "meaning 'what a majority agrees on'"),
    ParamSpec("bonds_moving_average", float, 0.0, 0.99, True,
              "bond EMA memory (rate = 1 - value); 1.0 would freeze bonds forever"),
    ParamSpec("bonds_penalty", float, 0.0, 1.0, True, "how far bonds follow clipped weights"),
    ParamSpec("yuma3", bool, False, True, True, "Yuma3 absolute bonds instead of Yuma2"),
    ParamSpec("liquid_alpha", bool, False, True, True, "per-pair EMA rate (Yuma3 only)"),
    ParamSpec("alpha_low", float, 0.025, 1.0, True, "liquid alpha lower rate (<= alpha_high)"),
    ParamSpec("alpha_high", float, 0.025, 1.0, True, "liquid alpha upper rate"),
    ParamSpec("alpha_sigmoid_steepness", float, 0.0, 100.0, True, "liquid alpha sigmoid slope"),
    ParamSpec("max_allowed_uids", int, 1, 4096, True,
              "uid slots; cannot go below the current number of neurons"),
    ParamSpec("max_allowed_validators", int, 1, 4096, True, "validator permits (top-k stake)"),
    ParamSpec("immunity_period", int, 0, 65_535, True, "blocks a new neuron cannot be pruned"),
    ParamSpec("activity_cutoff", int, 1, 65_535, True,
              "blocks without setting weights after which a validator's stake is inactive"),
    ParamSpec("weights_rate_limit", int, 0, 65_535, True,
              "blocks between two weight sets (or commits) of one neuron"),
    ParamSpec("min_allowed_weights", int, 1, 4096, True,
              "non-zero weights a set must carry (capped at the number of neurons)"),
    ParamSpec("max_weight_limit", int, 1, U16_ONE, True,
              "largest normalised weight, in 65535ths (65535 = no limit)"),
    ParamSpec("commit_reveal", bool, False, True, True, "weights must be committed, then revealed"),
    ParamSpec("reveal_period", int, 1, 100, True, "epochs between a commit and its reveal"),
    ParamSpec("min_burn", int, 0, 10_000 * _T, True, "lowest registration cost (units)"),
    ParamSpec("max_burn", int, 1, 100_000 * _T, True, "highest registration cost (units)"),
    ParamSpec("target_registrations_per_interval", int, 1, 4096, True,
              "registrations per adjustment interval at which the burn stays put"),
    ParamSpec("adjustment_interval", int, 1, 65_535, True, "blocks between burn adjustments"),
    ParamSpec("emission_per_block", int, 0, 1_000 * _T, False,
              "units minted to the subnet each block (network-level: owners would mint to "
              "themselves)"),
    ParamSpec("owner_cut", int, 0, U16_ONE, False,
              "owner's share of subnet emission, in 65535ths (network-level)"),
    ParamSpec("stake_threshold", int, 0, 1_000_000 * _T, False,
              "stake (units) below which a uid's stake counts as 0 in the epoch (network-level)"),
)
_SPECS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in HYPERPARAM_SPECS}


@dataclass(frozen=True, slots=True)
class SubnetHyperparams:
    """A subnet's hyperparameters. Defaults follow the reference chain unless noted.

    Raises:
        HyperparamError: a value has the wrong type or is outside :data:`HYPERPARAM_SPECS`
            bounds, ``alpha_low > alpha_high``, or ``min_burn > max_burn``.
    """

    tempo: int = 360
    kappa: float = 32_767 / U16_ONE  # chain default, just below 1/2
    bonds_moving_average: float = 0.9
    bonds_penalty: float = 1.0
    yuma3: bool = False
    liquid_alpha: bool = False
    alpha_low: float = 45_875 / U16_ONE
    alpha_high: float = 58_982 / U16_ONE
    alpha_sigmoid_steepness: float = 10.0
    max_allowed_uids: int = 256
    max_allowed_validators: int = 128
    immunity_period: int = 4096
    activity_cutoff: int = 5000
    weights_rate_limit: int = 100
    # the chain's 1024 (capped at n) forces weighting everyone; 1 lets small subnets start
    min_allowed_weights: int = 1
    max_weight_limit: int = U16_ONE
    # off by default so a fresh subnet works with plain set_weights; owners opt in
    commit_reveal: bool = False
    reveal_period: int = 1
    min_burn: int = UNITS_PER_TOKEN // 2_000  # chain MinBurn 0.0005
    max_burn: int = 100 * UNITS_PER_TOKEN  # chain MaxBurn 100
    target_registrations_per_interval: int = 2
    adjustment_interval: int = 100
    emission_per_block: int = UNITS_PER_TOKEN
    owner_cut: int = 11_796  # chain SubnetOwnerCut, about 18 %
    stake_threshold: int = 0

    def __post_init__(self) -> None:
        for spec in HYPERPARAM_SPECS:
            object.__setattr__(self, spec.name, _checked(spec, getattr(self, spec.name)))
        if self.alpha_low > self.alpha_high:
            raise HyperparamError("alpha_low must not exceed alpha_high")
        if self.min_burn > self.max_burn:
            raise HyperparamError("min_burn must not exceed max_burn")

    def with_changes(self, changes: Mapping[str, HyperparamValue]) -> SubnetHyperparams:
        """Return a copy with ``changes`` applied, validated as a whole.

        Raises:
            HyperparamError: an unknown name, or the result is invalid.
        """
        unknown = sorted(set(changes) - set(_SPECS_BY_NAME))
        if unknown:
            raise HyperparamError(f"unknown hyperparameters: {', '.join(unknown)}")
        merged: dict[str, Any] = {spec.name: getattr(self, spec.name) for spec in HYPERPARAM_SPECS}
        merged.update(changes)
        return SubnetHyperparams(**merged)

    def to_wire(self) -> list[HyperparamValue]:
        """The values in :data:`HYPERPARAM_SPECS` order (the canonical encoding)."""
        return [getattr(self, spec.name) for spec in HYPERPARAM_SPECS]

    @classmethod
    def from_wire(cls, value: Any) -> SubnetHyperparams:
        """Rebuild from :meth:`to_wire` output with strict types.

        Raises:
            DecodeError: wrong length, a wrong type, or an invalid value.
        """
        if not isinstance(value, list) or len(value) != len(HYPERPARAM_SPECS):
            raise DecodeError(f"hyperparams: expected an array of {len(HYPERPARAM_SPECS)} values")
        try:
            fields = {spec.name: read_value(spec.name, item)
                      for spec, item in zip(HYPERPARAM_SPECS, value, strict=True)}
            return cls(**fields)  # type: ignore[arg-type]
        except HyperparamError as exc:
            raise DecodeError(f"hyperparams: {exc}") from None


def spec_of(name: str) -> ParamSpec:
    """Return the spec of hyperparameter ``name``.

    Raises:
        HyperparamError: no such hyperparameter.
    """
    try:
        return _SPECS_BY_NAME[name]
    except KeyError:
        raise HyperparamError(f"unknown hyperparameter {name!r}") from None


def read_value(name: str, value: Any) -> HyperparamValue:
    """Return ``value`` if its wire type is exactly the declared type of ``name``.

    Bounds are not checked here (:class:`SubnetHyperparams` does that).

    Raises:
        HyperparamError: unknown name or wrong type (a float field needs a float, not an int).
    """
    spec = spec_of(name)
    if not _has_kind(value, spec):
        raise HyperparamError(f"{name} must be a {spec.kind.__name__}")
    result: HyperparamValue = value
    return result


def _has_kind(value: Any, spec: ParamSpec) -> bool:
    """Exact type match: ``True`` is not an int here and ``1`` is not a float."""
    return type(value) is spec.kind


def _checked(spec: ParamSpec, value: Any) -> HyperparamValue:
    """Validate one value; ints are accepted for float fields and converted (Python callers)."""
    if spec.kind is float and type(value) is int:
        value = float(value)
    if not _has_kind(value, spec):
        raise HyperparamError(f"{spec.name} must be a {spec.kind.__name__}, got {value!r}")
    if spec.kind is float and not math.isfinite(value):
        raise HyperparamError(f"{spec.name} must be finite")
    if not spec.low <= value <= spec.high:
        raise HyperparamError(f"{spec.name} must lie in [{spec.low}, {spec.high}], got {value!r}")
    result: HyperparamValue = value
    return result
