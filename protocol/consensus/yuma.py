"""Yuma Consensus: one epoch of the ledger's incentive mechanism, as YUMA.md §3 specifies it.

Weights set by validators and their stake go in; consensus, incentive, dividends, bonds and
emission come out. Everything is float64 numpy, a pure function of its arguments: no I/O, no
global state, no randomness.

Only rows of uids that hold a validator permit (or carry bonds from the previous epoch) can be
non-zero anywhere in the per-row matrices, so the epoch works on that row subset (validators x n)
and scatters it back into n x n outputs at the end. That keeps n = 4096 with 256 validators cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocol.errors import ConsensusInputError

__all__ = ["ConsensusInputError", "YumaOutput", "YumaParams", "yuma_epoch"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]
IndexArray = NDArray[np.intp]
_ArrayT = TypeVar("_ArrayT", bound=np.ndarray[Any, Any])

# liquid alpha's exp_safe clamps the exponent to this range on chain (YUMA.md §3.10c)
_EXP_CLAMP = 20.0
# ln 2 split in two (Cody and Waite): _LN2_HI has trailing zero bits, so k * _LN2_HI is exact
# for the |k| <= 29 that |x| <= 20 gives, and _LN2_LO carries the rest.
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
# Taylor coefficients 1/i! of e**r, highest first; degree 13 leaves a remainder below 1e-17 for
# |r| <= ln(2)/2.
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13, -1, -1))


@dataclass(frozen=True)
class YumaParams:
    """Hyperparameters of one epoch, as floats (YUMA.md §2); defaults are the chain defaults.

    The u16 chain values are converted exactly as the chain does (value / 65535), so the
    defaults equal the ``params`` of the reference vectors bit for bit.

    Raises:
        ConsensusInputError: a value is out of its documented range.
    """

    kappa: float = 32_767 / 65_535  # chain `Kappa` default, just below 1/2
    bonds_penalty: float = 1.0  # `BondsPenalty` 65535/65535: bonds follow clipped weights only
    bonds_moving_average: float = 0.9  # `BondsMovingAverage` 900_000 / 1e6, EMA rate 0.1
    yuma3: bool = False
    liquid_alpha: bool = False
    alpha_low: float = 45_875 / 65_535  # `AlphaValues` default low
    alpha_high: float = 58_982 / 65_535  # `AlphaValues` default high
    alpha_sigmoid_steepness: float = 10.0  # `AlphaSigmoidSteepness` 1000 / 100
    max_allowed_validators: int = 128
    activity_cutoff: int = 5000  # blocks; factor 13_889 milli x tempo 360
    tempo: int = 360
    stake_threshold: float = 0.0
    owner_uid: int | None = None
    subnet_emission: float = 1.0
    owner_cut: float = 11_796 / 65_535  # `SubnetOwnerCut` default

    def __post_init__(self) -> None:
        for name in ("kappa", "alpha_low", "alpha_high", "alpha_sigmoid_steepness"):
            _require(math.isfinite(getattr(self, name)), f"{name} must be finite")
        for name in ("bonds_penalty", "bonds_moving_average", "owner_cut"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"{name} must lie in [0, 1], got {value!r}")
        _require(self.alpha_low <= self.alpha_high, "alpha_low must not exceed alpha_high")
        for name in ("max_allowed_validators", "activity_cutoff", "tempo"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, f"{name} must be an int >= 0, got {value!r}")
        for name in ("stake_threshold", "subnet_emission"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value >= 0.0, f"{name} must be finite and >= 0")
        if self.owner_uid is not None:
            _require(_is_int(self.owner_uid) and self.owner_uid >= 0,
                     f"owner_uid must be None or an int >= 0, got {self.owner_uid!r}")


@dataclass(frozen=True, eq=False)
class YumaOutput:
    """Every result of one epoch, named as in YUMA.md §0 ``EXPECTED``.

    Vectors have length n, matrices are n x n, scalars are floats. All arrays are float64
    except the booleans ``active`` and ``new_validator_permit``; they are read-only.
    ``bonds`` is the state to pass as ``bonds_prev`` to the next epoch.
    """

    stake: FloatArray
    active: BoolArray
    active_stake: FloatArray
    new_validator_permit: BoolArray
    consensus: FloatArray
    validator_trust: FloatArray
    preranks: FloatArray
    ranks_raw: FloatArray
    ranks: FloatArray
    trust: FloatArray
    incentive: FloatArray
    dividends: FloatArray
    bonds: FloatArray
    server_emission: FloatArray
    validator_emission: FloatArray
    combined_emission: FloatArray
    epoch_emission: float
    owner_emission: float
    emission_miner_share: float
    emission_validator_share: float
    emission_owner_share: float
    weights_normalized: FloatArray
    clipped_weights: FloatArray


class _Inputs(NamedTuple):
    """Validated epoch inputs; ``None`` keeps its meaning "not used".

    ``rows`` are the uids whose weight or bond rows can be non-zero (permit holders, the owner,
    holders of previous bonds); ``W`` and ``bonds_prev`` hold only those rows, in that order.
    """

    rows: IndexArray
    W: FloatArray
    S: FloatArray
    permit: BoolArray
    bonds_prev: FloatArray | None
    last_update: IntArray | None
    block_at_registration: IntArray | None
    current_block: int | None
    last_tempo: int | None


class _Emission(NamedTuple):
    server: FloatArray
    validator: FloatArray
    combined: FloatArray


def yuma_epoch(
    W: ArrayLike,
    S: ArrayLike,
    params: YumaParams | None = None,
    *,
    validator_permit: ArrayLike | None = None,
    bonds_prev: ArrayLike | None = None,
    last_update: ArrayLike | None = None,
    block_at_registration: ArrayLike | None = None,
    current_block: int | None = None,
    last_tempo: int | None = None,
) -> YumaOutput:
    """Run one Yuma Consensus epoch over n uids (YUMA.md §3, float64 semantics).

    Args:
        W: n x n weights >= 0; row i is set by uid i. Any positive scale per row. Rows of uids
            without a permit are ignored; they are only checked when the uid carries bonds.
        S: n stake weights >= 0, any unit.
        params: hyperparameters; ``None`` means ``YumaParams()``.
        validator_permit: n bools, the permits going into this epoch (the previous epoch's
            ``new_validator_permit``); ``None`` means every uid holds one.
        bonds_prev: n x n bonds from the previous epoch (entries >= 0; Yuma3: in [0, 1]);
            ``None`` means all zero.
        last_update: n ints, block at which each uid last set weights, or ``None``.
        block_at_registration: n ints, block at which each uid registered, or ``None``.
        current_block: block of this epoch, or ``None``.
        last_tempo: block of the previous epoch + 1, or ``None``
            (then ``max(current_block - tempo, 0)`` if ``current_block`` is given).

    Returns:
        A :class:`YumaOutput` with every quantity of YUMA.md §0 ``EXPECTED``.

    Raises:
        ConsensusInputError: an input has the wrong shape or type, a negative or non-finite
            value, or ``params.owner_uid`` is not a uid.
    """
    params = YumaParams() if params is None else params
    inp = _parse_inputs(W, S, params, validator_permit=validator_permit, bonds_prev=bonds_prev,
                        last_update=last_update, block_at_registration=block_at_registration,
                        current_block=current_block, last_tempo=last_tempo)
    n = inp.S.shape[0]
    owner = params.owner_uid

    active = _activity(n, inp.last_update, inp.current_block, params.activity_cutoff)
    stake = _stake(inp.S, params.stake_threshold, owner)
    permit, new_permit = _permits(inp.permit, stake, params.max_allowed_validators, owner)
    active_stake = _active_stake(stake, active, permit)

    rows = inp.rows
    a = active_stake[rows]
    weights = _masked_weights(inp.W, rows, permit, owner_uid=owner, last_update=inp.last_update,
                              block_at_registration=inp.block_at_registration)
    consensus = _consensus(weights, a, params.kappa)
    clipped, validator_trust = _clip(weights, consensus)
    preranks, ranks_raw, trust, incentive = _ranks(a, weights, clipped)

    purchase = _bond_purchase(weights, clipped, params.bonds_penalty)
    prev = _previous_bonds(inp.bonds_prev, (rows.shape[0], n), inp.block_at_registration,
                           _last_tempo(inp.current_block, inp.last_tempo, params.tempo))
    if params.yuma3:
        bonds, dividends = _bonds_yuma3(purchase, prev, a, consensus=consensus,
                                        incentive=incentive, params=params)
    else:
        bonds, dividends = _bonds_yuma2(purchase, prev, a, incentive, params.bonds_moving_average)
    bonds[~new_permit[rows]] = 0.0

    dividends_n = _scatter_vector(dividends, rows, n)
    epoch_emission = params.subnet_emission * (1.0 - params.owner_cut)
    emission = _emission(incentive, dividends_n, active_stake, stake, epoch_emission)
    # shares are per unit of subnet emission; computing them from a unit split keeps them
    # defined when subnet_emission is 0
    shares = _emission(incentive, dividends_n, active_stake, stake, 1.0 - params.owner_cut)

    return YumaOutput(
        stake=_frozen(stake),
        active=_frozen(active),
        active_stake=_frozen(active_stake),
        new_validator_permit=_frozen(new_permit),
        consensus=_frozen(consensus),
        validator_trust=_frozen(_scatter_vector(validator_trust, rows, n)),
        preranks=_frozen(preranks),
        ranks_raw=_frozen(ranks_raw),
        ranks=_frozen(incentive.copy()),
        trust=_frozen(trust),
        incentive=_frozen(incentive),
        dividends=_frozen(dividends_n),
        bonds=_frozen(_scatter_rows(bonds, rows, n)),
        server_emission=_frozen(emission.server),
        validator_emission=_frozen(emission.validator),
        combined_emission=_frozen(emission.combined),
        epoch_emission=float(epoch_emission),
        owner_emission=float(params.subnet_emission * params.owner_cut),
        emission_miner_share=float(shares.server.sum()),
        emission_validator_share=float(shares.validator.sum()),
        emission_owner_share=float(params.owner_cut),
        weights_normalized=_frozen(_scatter_rows(weights, rows, n)),
        clipped_weights=_frozen(_scatter_rows(clipped, rows, n)),
    )


# --- §3.1 to §3.4: activity, stake, permits -------------------------------------------------


def _activity(n: int, last_update: IntArray | None, current_block: int | None,
              activity_cutoff: int) -> BoolArray:
    """§3.1: uids that set weights within ``activity_cutoff`` blocks; all if unknown."""
    if last_update is None or current_block is None:
        return np.ones(n, dtype=np.bool_)
    inactive: BoolArray = last_update + activity_cutoff < current_block
    return ~inactive


def _stake(raw: FloatArray, stake_threshold: float, owner_uid: int | None) -> FloatArray:
    """§3.2: stake below the threshold counts as 0 (the owner is exempt), then normalised."""
    below = raw < stake_threshold
    if owner_uid is not None:
        below[owner_uid] = False
    return _normalize(np.where(below, 0.0, raw))


def _topk_nonzero(values: FloatArray, k: int) -> BoolArray:
    """§3.3 ``is_topk_nonzero``: the k largest non-zero values; ties go to the higher index."""
    result: BoolArray = values != 0
    n = values.shape[0]
    if n >= k:
        # a stable ascending sort drops the lower uid first among equal values
        result[np.argsort(values, kind="stable")[: n - k]] = False
    return result


def _permits(permit_in: BoolArray, stake: FloatArray, max_allowed_validators: int,
             owner_uid: int | None) -> tuple[BoolArray, BoolArray]:
    """§3.3: (permits used this epoch, permits granted for the next); the owner holds both."""
    permit = permit_in.copy()
    new_permit = _topk_nonzero(stake, max_allowed_validators)
    if owner_uid is not None:
        permit[owner_uid] = True
        new_permit[owner_uid] = True
    return permit, new_permit


def _active_stake(stake: FloatArray, active: BoolArray, permit: BoolArray) -> FloatArray:
    """§3.4: stake of active permit holders, renormalised."""
    return _normalize(np.where(active & permit, stake, 0.0))


# --- §3.5 to §3.8: weights, consensus, clipping, ranks ----------------------------------------


def _masked_weights(weights: FloatArray, rows: IndexArray, permit: BoolArray, *,
                    owner_uid: int | None, last_update: IntArray | None,
                    block_at_registration: IntArray | None) -> FloatArray:
    """§3.5: the weight rows of uids ``rows`` after the permit, self-weight and outdated masks,
    row-normalised, in place."""
    weights[~permit[rows]] = 0.0
    not_owner = rows != owner_uid if owner_uid is not None else np.ones(rows.shape, np.bool_)
    weights[np.flatnonzero(not_owner), rows[not_owner]] = 0.0
    if last_update is not None and block_at_registration is not None:
        # a weight set before uid j (re)registered scored the slot's previous owner
        weights[last_update[rows, None] <= block_at_registration[None, :]] = 0.0
    return _row_normalize(weights)


def _consensus(weights: FloatArray, a: FloatArray, kappa: float) -> FloatArray:
    """§3.6: stake-weighted kappa-median of every column over the rows with ``a > 0``.

    ``C[j]`` is the smallest score whose cumulative (ascending) stake exceeds
    ``sum(s') - kappa``, strictly; the largest score if none does; 0 if nobody has stake.
    All columns are done at once: argsort each column, cumulate the stakes, take the first
    index above the minority level.
    """
    n = weights.shape[1]
    voters = a > 0
    if not voters.any():
        return np.zeros(n)
    share = a[voters] / a[voters].sum()
    minority = share.sum() - kappa
    voting = weights if voters.all() else weights[voters]
    order = np.argsort(np.ascontiguousarray(voting.T), axis=1)  # n x validators
    # the stakes in ascending score order, cumulated (reusing one buffer: these are large)
    cumulative = np.take(share, order)
    np.cumsum(cumulative, axis=1, out=cumulative)
    above = cumulative > minority
    first = np.argmax(above, axis=1)
    # stakes are >= 0, so the cumulative sum never falls: nothing above <=> last not above
    first[~above[:, -1]] = share.shape[0] - 1
    columns = np.arange(n)
    result: FloatArray = voting[order[columns, first], columns]
    return result


def _clip(weights: FloatArray, consensus: FloatArray) -> tuple[FloatArray, FloatArray]:
    """§3.7: (clipped weights min(W, C), validator trust = their row sums)."""
    clipped = np.minimum(weights, consensus[None, :])
    return clipped, clipped.sum(axis=1)


def _ranks(a: FloatArray, weights: FloatArray,
           clipped: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """§3.8: (preranks P, ranks R, trust R/P with 0 where P = 0, incentive = normalize(R))."""
    preranks = _weighted_rows(a, weights)
    ranks = _weighted_rows(a, clipped)
    trust = np.divide(ranks, preranks, out=np.zeros_like(ranks), where=preranks > 0)
    return preranks, ranks, trust, _normalize(ranks)


# --- §3.9 to §3.10: bonds and dividends -----------------------------------------------------


def _bond_purchase(weights: FloatArray, clipped: FloatArray, bonds_penalty: float) -> FloatArray:
    """§3.9.1: the weights that buy bonds, W + beta (W_clipped - W)."""
    purchase = clipped - weights
    purchase *= bonds_penalty
    purchase += weights
    return purchase


def _last_tempo(current_block: int | None, last_tempo: int | None, tempo: int) -> int | None:
    """§3.9.3: the first block of this epoch's interval, or ``None`` if unknown."""
    if last_tempo is None and current_block is not None:
        return max(current_block - tempo, 0)
    return last_tempo


def _previous_bonds(bonds: FloatArray | None, shape: tuple[int, int],
                    block_at_registration: IntArray | None,
                    last_tempo: int | None) -> FloatArray:
    """§3.9.4: the previous bond rows (zeros if none), with columns of uids registered since
    the previous epoch cleared, in place (a new owner of a slot does not inherit its bonds)."""
    if bonds is None:
        return np.zeros(shape)
    if block_at_registration is not None and last_tempo is not None:
        bonds[:, block_at_registration >= last_tempo] = 0.0
    return bonds


def _bonds_yuma2(purchase: FloatArray, prev: FloatArray, a: FloatArray, incentive: FloatArray,
                 bonds_moving_average: float) -> tuple[FloatArray, FloatArray]:
    """§3.10a: (column-normalised EMA bonds, normalised dividends)."""
    alpha = 1.0 - bonds_moving_average
    bonds = _col_normalize(purchase * a[:, None])
    bonds *= alpha
    prev = _col_normalize(prev)
    prev *= 1.0 - alpha
    bonds += prev
    bonds = _col_normalize(bonds)
    return bonds, _normalize(_row_products(bonds, incentive))


def _bonds_yuma3(purchase: FloatArray, prev: FloatArray, a: FloatArray, *,
                 consensus: FloatArray, incentive: FloatArray,
                 params: YumaParams) -> tuple[FloatArray, FloatArray]:
    """§3.10b: (absolute EMA bonds, normalised stake-weighted dividends)."""
    if params.liquid_alpha and np.any(consensus != 0):
        alpha = _liquid_alpha(purchase, prev, consensus, params)
        bonds = np.minimum((1.0 - alpha) * prev + np.maximum(alpha * purchase, 0.0), 1.0)
    else:
        rate = 1.0 - params.bonds_moving_average
        bonds = rate * purchase + (1.0 - rate) * prev
    dividends = a * _row_products(_col_normalize(bonds.copy()), incentive)
    return bonds, _normalize(dividends)


def _liquid_alpha(purchase: FloatArray, prev: FloatArray, consensus: FloatArray,
                  params: YumaParams) -> FloatArray:
    """§3.10c: per-pair EMA rate, a sigmoid of how far a buy is above consensus or a sale
    below the old bond."""
    buying = purchase >= prev
    distance = np.clip(np.where(buying, purchase - consensus[None, :], prev - purchase), 0.0, 1.0)
    exponent = np.clip(-params.alpha_sigmoid_steepness * (distance - 0.5), -_EXP_CLAMP, _EXP_CLAMP)
    sigmoid = 1.0 / (1.0 + _exp(exponent))
    low, high = params.alpha_low, params.alpha_high
    return np.clip(low + sigmoid * (high - low), low, high)


def _exp(x: FloatArray) -> FloatArray:
    """``e**x`` for ``|x| <= _EXP_CLAMP``, with the same bits on every machine.

    ``np.exp`` picks a SIMD implementation by CPU at run time, and their last bits differ; on a
    ledger, nodes with different CPUs would then pay different shares and fork. This uses only
    operations IEEE 754 rounds exactly, one numpy call each, in a fixed order: ``x = k ln 2 + r``
    with ``|r| <= ln(2)/2``, a Taylor polynomial of ``e**r`` by Horner's rule, and ``2**k``
    applied by ``ldexp``. Within 2 ulp of ``np.exp``.
    """
    k = np.rint(x / _LN2_HI)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = np.full_like(r, _EXP_TAYLOR[0])
    for coefficient in _EXP_TAYLOR[1:]:
        p = p * r + coefficient
    return np.ldexp(p, k.astype(np.int64))


# --- §3.11: emission ------------------------------------------------------------------------


def _emission(incentive: FloatArray, dividends: FloatArray, active_stake: FloatArray,
              stake: FloatArray, total: float) -> _Emission:
    """§3.11: split ``total`` between miners (incentive) and validators (dividends); with
    neither, everything goes to validators by active stake, else by stake."""
    norm = (incentive + dividends).sum()
    if norm != 0:
        return _Emission(total * incentive / norm, total * dividends / norm,
                         total * _normalize(incentive + dividends))
    fallback = active_stake if active_stake.sum() != 0 else stake
    return _Emission(np.zeros_like(incentive), total * fallback, total * fallback)


# --- helpers --------------------------------------------------------------------------------


def _normalize(x: FloatArray) -> FloatArray:
    """x / sum(x), or x unchanged when the sum is 0."""
    total = x.sum()
    return x / total if total != 0 else x.copy()


def _weighted_rows(weights: FloatArray, m: FloatArray) -> FloatArray:
    """sum_i weights[i] * m[i, :]."""
    # einsum runs on this thread: a threaded BLAS gemv stalls waking its workers on a busy box
    result: FloatArray = np.einsum("i,ij->j", weights, m)
    return result


def _row_products(m: FloatArray, x: FloatArray) -> FloatArray:
    """sum_j m[:, j] * x[j]."""
    result: FloatArray = np.einsum("ij,j->i", m, x)
    return result


def _row_normalize(m: FloatArray) -> FloatArray:
    """Divide each row with a positive sum by that sum, in place; returns ``m``."""
    sums = m.sum(axis=1)
    m /= np.where(sums > 0, sums, 1.0)[:, None]
    return m


def _col_normalize(m: FloatArray) -> FloatArray:
    """Divide each column with a non-zero sum by that sum, in place; returns ``m``."""
    sums = m.sum(axis=0)
    m /= np.where(sums != 0, sums, 1.0)[None, :]
    return m


def _scatter_rows(sub: FloatArray, rows: IndexArray, n: int) -> FloatArray:
    full = np.zeros((n, n))
    full[rows] = sub
    return full


def _scatter_vector(sub: FloatArray, rows: IndexArray, n: int) -> FloatArray:
    full = np.zeros(n)
    full[rows] = sub
    return full


def _frozen(x: _ArrayT) -> _ArrayT:
    x.setflags(write=False)
    return x


# --- input validation -----------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConsensusInputError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _array(name: str, value: ArrayLike, shape: tuple[int, ...] | None) -> NDArray[np.generic]:
    """``value`` as an array, which must have ``shape`` unless that is ``None``."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ConsensusInputError(f"{name} is not a rectangular array: {exc}") from exc
    _require(shape is None or arr.shape == shape,
             f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _float_array(name: str, value: ArrayLike, shape: tuple[int, ...] | None) -> FloatArray:
    arr = _array(name, value, shape)
    _require(arr.dtype.kind in "biuf", f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_values(name: str, arr: FloatArray, upper: float = math.inf) -> None:
    """Every entry of ``arr`` is finite and lies in [0, upper]."""
    if arr.size == 0:
        return
    high = arr.max()
    if arr.min() >= 0 and high <= upper and high < math.inf:
        return  # the common case: two reductions, no temporaries (NaN fails every comparison)
    _require(bool(np.isfinite(arr).all()), f"{name} must be finite")
    _require(bool((arr >= 0).all()), f"{name} must be >= 0")
    _require(bool((arr <= upper).all()), f"{name} must be <= {upper}")


def _block_array(name: str, value: ArrayLike | None, n: int) -> IntArray | None:
    if value is None:
        return None
    arr = _array(name, value, (n,))
    if arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr) & (arr == np.floor(arr)))):
        return arr.astype(np.int64)
    _require(arr.dtype.kind in "iu", f"{name} must hold integer block numbers")
    return arr.astype(np.int64, copy=False)


def _block(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    _require(_is_int(value), f"{name} must be an int or None, got {value!r}")
    return int(value)


def _parse_inputs(W: ArrayLike, S: ArrayLike, params: YumaParams, *,
                  validator_permit: ArrayLike | None, bonds_prev: ArrayLike | None,
                  last_update: ArrayLike | None, block_at_registration: ArrayLike | None,
                  current_block: int | None, last_tempo: int | None) -> _Inputs:
    """Check shapes, types and ranges; n is the length of ``S``."""
    stake = _float_array("S", S, None)
    _require(stake.ndim == 1, f"S must be a vector, got shape {stake.shape}")
    n = stake.shape[0]
    _require(n >= 1, "an epoch needs at least one uid (S is empty)")
    _check_values("S", stake)
    if params.owner_uid is not None:
        _require(params.owner_uid < n, f"owner_uid {params.owner_uid} is not a uid (n = {n})")

    if validator_permit is None:
        permit = np.ones(n, dtype=np.bool_)
    else:
        raw = _array("validator_permit", validator_permit, (n,))
        zero_one = raw.dtype.kind in "iu" and bool(np.isin(raw, (0, 1)).all())
        _require(raw.dtype.kind == "b" or zero_one, "validator_permit must hold booleans")
        permit = raw.astype(np.bool_)

    bonds: FloatArray | None = None
    rows_used = permit.copy()
    if params.owner_uid is not None:
        rows_used[params.owner_uid] = True  # the owner always holds a permit (§3.3)
    if bonds_prev is not None:
        bonds = _float_array("bonds_prev", bonds_prev, (n, n))
        # a row is used if any entry has a bit set: every value but +0.0 (NaN and negatives
        # included, so they are caught below); an integer max is twice as fast as np.any
        rows_used |= bonds.view(np.uint64).max(axis=1) != 0
    rows = np.flatnonzero(rows_used)
    if bonds is not None:
        bonds = bonds[rows]
        _check_values("bonds_prev", bonds, 1.0 if params.yuma3 else math.inf)

    weights = _float_array("W", W, (n, n))[rows]
    _check_values("W", weights)

    return _Inputs(
        rows=rows,
        W=weights,
        S=stake,
        permit=permit,
        bonds_prev=bonds,
        last_update=_block_array("last_update", last_update, n),
        block_at_registration=_block_array("block_at_registration", block_at_registration, n),
        current_block=_block("current_block", current_block),
        last_tempo=_block("last_tempo", last_tempo),
    )
