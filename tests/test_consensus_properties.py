"""Invariants of Yuma Consensus (YUMA.md §3.13) as property tests, plus hand-checked edge cases.

Stakes are drawn as distinct integers, so top-k permits never tie and every cumulative-stake
breakpoint stays far (> 1e-8) from the default 1 - kappa level; outputs then change only at
round-off level under permutation and scaling.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from protocol.consensus import ConsensusInputError, YumaOutput, YumaParams, yuma_epoch

MATRICES = {"bonds", "weights_normalized", "clipped_weights"}
SCALARS = {"epoch_emission", "owner_emission", "emission_miner_share",
           "emission_validator_share", "emission_owner_share"}
FIELDS = [f.name for f in dataclasses.fields(YumaOutput)]
EPS = 1e-12
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


@dataclasses.dataclass(frozen=True)
class Epoch:
    """One drawn epoch: positional inputs, params and the keyword inputs of yuma_epoch."""

    W: np.ndarray
    S: np.ndarray
    params: YumaParams
    kwargs: dict[str, Any]

    def run(self, **changes: Any) -> YumaOutput:
        fields = {"W": self.W, "S": self.S, "params": self.params, **self.kwargs, **changes}
        return yuma_epoch(fields.pop("W"), fields.pop("S"), fields.pop("params"), **fields)


@st.composite
def epochs(draw: st.DrawFn, *, max_n: int = 8, yuma3: bool | None = None,
           all_staked: bool = False) -> Epoch:
    """A random epoch over 1..max_n uids with every optional input sometimes present."""
    n = draw(st.integers(1, max_n))
    weight = st.one_of(st.just(0.0), st.floats(1e-3, 1.0))
    W = draw(arrays(np.float64, (n, n), elements=weight))
    low = 1 if all_staked else 0
    S = np.array(draw(st.lists(st.integers(low, 10**6), min_size=n, max_size=n, unique=True)),
                 dtype=np.float64)
    if not all_staked:
        S[np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))] = 0.0
    alpha_low = draw(st.floats(0.0, 1.0))
    params = YumaParams(
        kappa=draw(st.sampled_from([YumaParams().kappa, 0.25, 0.7])),
        bonds_penalty=draw(st.sampled_from([1.0, 0.0, 0.5])),
        bonds_moving_average=draw(st.floats(0.0, 1.0)),
        yuma3=draw(st.booleans()) if yuma3 is None else yuma3,
        liquid_alpha=draw(st.booleans()),
        alpha_low=alpha_low,
        alpha_high=draw(st.floats(alpha_low, 1.0)),
        alpha_sigmoid_steepness=draw(st.sampled_from([10.0, 1.0, 100.0])),
        max_allowed_validators=n if all_staked else draw(st.integers(0, n + 1)),
        activity_cutoff=draw(st.integers(0, 100)),
        tempo=draw(st.integers(1, 100)),
        owner_uid=draw(st.none() | st.integers(0, n - 1)),
        subnet_emission=draw(st.floats(0.5, 1e6)),
        owner_cut=draw(st.floats(0.0, 1.0)),
    )
    blocks = st.lists(st.integers(0, 200), min_size=n, max_size=n).map(np.array)
    unit = st.floats(0.0, 1.0)
    kwargs: dict[str, Any] = {
        "validator_permit": np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "bonds_prev": draw(st.none() | arrays(np.float64, (n, n), elements=unit)),
        "last_update": draw(st.none() | blocks),
        "block_at_registration": draw(st.none() | blocks),
        "current_block": draw(st.none() | st.integers(0, 300)),
        "last_tempo": draw(st.none() | st.integers(0, 300)),
    }
    if all_staked:
        kwargs["validator_permit"][:] = True
    return Epoch(W, S, params, kwargs)


def assert_outputs_close(actual: YumaOutput, expected: dict[str, Any]) -> None:
    """Every field of ``actual`` equals ``expected`` (booleans exactly, numbers to round-off)."""
    for name in FIELDS:
        got, want = np.asarray(getattr(actual, name)), np.asarray(expected[name])
        if want.dtype == np.bool_:
            assert np.array_equal(got, want), name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)


def as_dict(out: YumaOutput) -> dict[str, Any]:
    return {name: getattr(out, name) for name in FIELDS}


# --- §3.13 invariants -----------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(epochs(), st.randoms(use_true_random=False))
def test_permutation_equivariance(epoch: Epoch, rnd: Any) -> None:
    """Permuting the uids (with the owner) permutes every output the same way."""
    n = epoch.S.shape[0]
    perm = np.array(rnd.sample(range(n), n))
    owner = epoch.params.owner_uid
    params = dataclasses.replace(
        epoch.params, owner_uid=None if owner is None else int(np.flatnonzero(perm == owner)[0]))
    kwargs = {k: (v[perm] if isinstance(v, np.ndarray) and v.ndim == 1 else v)
              for k, v in epoch.kwargs.items()}
    if kwargs["bonds_prev"] is not None:
        kwargs["bonds_prev"] = kwargs["bonds_prev"][np.ix_(perm, perm)]
    permuted = Epoch(epoch.W[np.ix_(perm, perm)], epoch.S[perm], params, kwargs).run()

    expected = as_dict(epoch.run())
    for name in FIELDS:
        if name in MATRICES:
            expected[name] = expected[name][np.ix_(perm, perm)]
        elif name not in SCALARS:
            expected[name] = expected[name][perm]
    assert_outputs_close(permuted, expected)


@PROPERTY_SETTINGS
@given(epochs(), st.data())
def test_row_scale_invariance(epoch: Epoch, data: st.DataObject) -> None:
    """Multiplying one validator's weight row by c > 0 changes nothing."""
    row = data.draw(st.integers(0, epoch.S.shape[0] - 1))
    W = epoch.W.copy()
    W[row] *= data.draw(st.floats(1e-3, 1e3))
    assert_outputs_close(epoch.run(W=W), as_dict(epoch.run()))


@PROPERTY_SETTINGS
@given(epochs(), st.floats(1e-3, 1e3))
def test_stake_scale_invariance(epoch: Epoch, c: float) -> None:
    """Multiplying all stake by c > 0 changes nothing (the stake threshold is 0)."""
    assert_outputs_close(epoch.run(S=epoch.S * c), as_dict(epoch.run()))


@PROPERTY_SETTINGS
@given(epochs(yuma3=False), st.data())
def test_yuma2_bond_column_scale_invariance(epoch: Epoch, data: st.DataObject) -> None:
    """In Yuma2, a positive per-column scale of bonds_prev changes nothing."""
    n = epoch.S.shape[0]
    bonds = data.draw(arrays(np.float64, (n, n), elements=st.floats(0.0, 1.0)))
    scale = data.draw(arrays(np.float64, (n,), elements=st.floats(1e-3, 1e3)))
    assert_outputs_close(epoch.run(bonds_prev=bonds * scale[None, :]),
                         as_dict(epoch.run(bonds_prev=bonds)))


@PROPERTY_SETTINGS
@given(epochs())
def test_bounds(epoch: Epoch) -> None:
    """Consensus, clipped weights, trust and bonds stay in range; incentive and dividends are
    normalised or all zero."""
    out = epoch.run()
    assert np.all(out.consensus >= 0)
    assert np.all(out.consensus <= 1 + EPS)
    assert np.all(out.clipped_weights >= 0)
    assert np.all(out.clipped_weights <= out.weights_normalized)
    for name in ("trust", "validator_trust"):
        assert np.all(getattr(out, name) >= 0), name
        assert np.all(getattr(out, name) <= 1 + EPS), name
    for name in ("incentive", "dividends"):
        vector = getattr(out, name)
        assert np.all(vector >= 0), name
        assert vector.sum() == 0 or abs(vector.sum() - 1) <= EPS, name
    assert np.all(out.bonds >= 0)
    if epoch.params.yuma3:
        assert np.all(out.bonds <= 1 + EPS)
    else:
        assert np.all(out.bonds.sum(axis=0) <= 1 + EPS)


@PROPERTY_SETTINGS
@given(epochs(yuma3=False, all_staked=True))
def test_yuma2_bond_columns_sum_to_one_or_zero(epoch: Epoch) -> None:
    """With every uid keeping its permit, each Yuma2 bond column sums to 1 or 0."""
    out = epoch.run()
    assert out.new_validator_permit.all()
    sums = out.bonds.sum(axis=0)
    assert np.all((sums == 0) | (np.abs(sums - 1) <= EPS))


@PROPERTY_SETTINGS
@given(epochs())
def test_emission_conservation(epoch: Epoch) -> None:
    """Miners, validators and the owner receive exactly the subnet emission (if anyone has
    stake or incentive); the shares agree with the amounts."""
    out = epoch.run()
    p = epoch.params
    paid = out.server_emission.sum() + out.validator_emission.sum() + out.owner_emission
    if out.stake.any() or out.incentive.any():
        assert paid == pytest.approx(p.subnet_emission, rel=1e-12)
        assert out.combined_emission.sum() == pytest.approx(out.epoch_emission, rel=1e-12)
    assert out.epoch_emission == pytest.approx(p.subnet_emission * (1 - p.owner_cut))
    assert out.emission_miner_share == pytest.approx(
        out.server_emission.sum() / p.subnet_emission, rel=1e-12, abs=1e-15)
    assert out.emission_validator_share == pytest.approx(
        out.validator_emission.sum() / p.subnet_emission, rel=1e-12, abs=1e-15)
    assert out.emission_owner_share == p.owner_cut


@PROPERTY_SETTINGS
@given(epochs(), st.floats(-0.5, 1.5), st.floats(-0.5, 1.5))
def test_larger_kappa_never_raises_consensus(epoch: Epoch, k1: float, k2: float) -> None:
    """A larger kappa never raises any consensus entry."""
    low, high = sorted((k1, k2))
    c_low = epoch.run(params=dataclasses.replace(epoch.params, kappa=low)).consensus
    c_high = epoch.run(params=dataclasses.replace(epoch.params, kappa=high)).consensus
    assert np.all(c_high <= c_low)


@PROPERTY_SETTINGS
@given(epochs())
def test_consensus_is_the_definition(epoch: Epoch) -> None:
    """Each C_j is the smallest score whose cumulative stake exceeds sum(s') - kappa (§3.6),
    checked column by column against the definition."""
    out = epoch.run()
    voters = out.active_stake > 0
    if not voters.any():
        assert not out.consensus.any()
        return
    share = out.active_stake[voters] / out.active_stake[voters].sum()
    minority = share.sum() - epoch.params.kappa
    for j, scores in enumerate(out.weights_normalized[voters].T):
        qualifying = [x for x in scores if share[scores <= x].sum() > minority]
        assert out.consensus[j] == (min(qualifying) if qualifying else scores.max())


# --- edge cases and behaviours YUMA.md names ------------------------------------------------


def disagreeing_pair(kappa: float) -> YumaOutput:
    """Two equal-stake validators (uids 0, 1) split their weight differently over miners 2, 3."""
    W = [[0, 0, 3, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    return yuma_epoch(W, [1, 1, 0, 0], YumaParams(kappa=kappa),
                      validator_permit=[True, True, False, False])


def test_exact_half_stake_does_not_reach_kappa_half() -> None:
    """With kappa = 0.5 exactly, a cumulative stake of 0.5 is not > 0.5: C is the higher score."""
    assert disagreeing_pair(0.5).consensus.tolist() == [0.0, 0.0, 0.75, 0.5]


def test_default_kappa_lets_half_stake_keep_the_higher_score() -> None:
    """The default kappa is just below 1/2, so half the stake never pulls a median down."""
    out = disagreeing_pair(YumaParams().kappa)
    assert out.consensus.tolist() == [0.0, 0.0, 0.75, 0.5]
    assert out.validator_trust.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_kappa_above_half_takes_the_lower_score() -> None:
    """With kappa = 0.51 the minority level is 0.49, which half the stake exceeds."""
    assert disagreeing_pair(0.51).consensus.tolist() == [0.0, 0.0, 0.5, 0.25]


@pytest.mark.parametrize(("kappa", "expected"),
                         [(1.0, 0.25), (0.0, 0.75), (-1.0, 0.75), (2.0, 0.25), (0.6, 0.5)])
def test_extreme_kappa_gives_min_or_max(kappa: float, expected: float) -> None:
    """kappa >= 1 gives the minimum score over staked validators, kappa <= 0 the maximum."""
    W = np.zeros((4, 4))
    W[:3, 3] = [0.25, 0.5, 0.75]
    W[[0, 1, 2], [1, 0, 0]] = [0.75, 0.5, 0.25]
    out = yuma_epoch(W, [1, 2, 3, 0], YumaParams(kappa=kappa),
                     validator_permit=[True, True, True, False])
    assert out.weights_normalized[:3, 3].tolist() == [0.25, 0.5, 0.75]
    assert out.consensus[3] == expected


@pytest.mark.parametrize(("k", "expected"), [(1, [False, False, True]), (2, [False, True, True]),
                                             (3, [True, True, True]), (0, [False] * 3)])
def test_permit_ties_go_to_the_higher_uid(k: int, expected: list[bool]) -> None:
    """Among equal stakes the top-k permits go to the higher uids."""
    out = yuma_epoch(np.zeros((3, 3)), [5, 5, 5], YumaParams(max_allowed_validators=k))
    assert out.new_validator_permit.tolist() == expected


def test_single_uid_without_owner_falls_back_to_stake() -> None:
    """n = 1: the only weight is a self-weight, which is masked, so validators get everything."""
    out = yuma_epoch([[1.0]], [3.0], YumaParams())
    assert out.consensus.tolist() == [0.0]
    assert out.incentive.tolist() == [0.0]
    assert out.server_emission.tolist() == [0.0]
    assert out.validator_emission.tolist() == [out.epoch_emission]
    assert out.new_validator_permit.tolist() == [True]
    assert out.emission_miner_share == 0.0
    assert out.emission_validator_share == 1 - out.emission_owner_share


def test_single_uid_owner_keeps_its_self_weight() -> None:
    """n = 1 and the uid is the owner: its self-weight counts, so it is miner and validator."""
    out = yuma_epoch([[2.0]], [3.0], YumaParams(owner_uid=0), validator_permit=[False])
    assert out.weights_normalized.tolist() == [[1.0]]
    assert out.consensus.tolist() == [1.0]
    assert out.incentive.tolist() == [1.0]
    assert out.dividends.tolist() == [1.0]
    assert out.bonds.tolist() == [[1.0]]
    assert out.server_emission.tolist() == pytest.approx([out.epoch_emission / 2])
    assert out.validator_emission.tolist() == pytest.approx([out.epoch_emission / 2])


def test_all_zero_stake_pays_nobody_but_the_owner() -> None:
    """With no stake at all there is no consensus and nothing for miners or validators."""
    W = np.ones((3, 3))
    out = yuma_epoch(W, [0, 0, 0], YumaParams(), bonds_prev=np.ones((3, 3)))
    for name in ("stake", "active_stake", "consensus", "incentive", "dividends", "bonds",
                 "server_emission", "validator_emission", "combined_emission"):
        assert not np.asarray(getattr(out, name)).any(), name
    assert not out.new_validator_permit.any()
    assert out.active.all()
    assert (out.emission_miner_share, out.emission_validator_share) == (0.0, 0.0)
    assert out.owner_emission == pytest.approx(YumaParams().owner_cut)


def test_no_weights_pays_validators_by_active_stake() -> None:
    """Nobody sets weights: the epoch emission goes to validators by active stake."""
    out = yuma_epoch(np.zeros((4, 4)), [1, 3, 4, 0], YumaParams(),
                     validator_permit=[True, True, False, False])
    assert out.active_stake.tolist() == [0.25, 0.75, 0.0, 0.0]
    assert out.server_emission.tolist() == [0.0] * 4
    np.testing.assert_allclose(out.validator_emission, out.epoch_emission * out.active_stake)
    np.testing.assert_array_equal(out.combined_emission, out.validator_emission)
    assert out.new_validator_permit.tolist() == [True, True, True, False]


def test_inactive_validator_keeps_earning_from_old_bonds() -> None:
    """Yuma2: an inactive validator has no active stake but its decayed bonds still pay."""
    params = YumaParams()
    out = yuma_epoch(
        [[0, 0, 1], [0, 0, 1], [0, 0, 0]], [1, 1, 0], params,
        validator_permit=[True, True, False],
        bonds_prev=[[0, 0, 3], [0, 0, 3], [0, 0, 0]],
        last_update=[100, 0, 0], current_block=params.activity_cutoff + 50)
    assert out.active.tolist() == [True, False, False]
    assert out.active_stake.tolist() == [1.0, 0.0, 0.0]
    assert out.incentive.tolist() == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(out.bonds[:, 2], [0.55, 0.45, 0.0], rtol=1e-15)
    np.testing.assert_allclose(out.dividends, [0.55, 0.45, 0.0], rtol=1e-15)


def test_outdated_weights_are_masked() -> None:
    """A weight set before the scored uid (re)registered is dropped."""
    W = [[0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    out = yuma_epoch(W, [1, 1, 0, 0], YumaParams(), validator_permit=[True, True, False, False],
                     last_update=[10, 10, 0, 0], block_at_registration=[0, 0, 20, 5])
    assert out.weights_normalized[:2].tolist() == [[0, 0.5, 0, 0.5], [0.5, 0, 0, 0.5]]


def test_new_registration_clears_the_bond_column() -> None:
    """Bonds on a uid registered since the last epoch are dropped; an unbought column keeps its
    old proportions otherwise."""
    W = [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    kwargs: dict[str, Any] = {"validator_permit": [True, True, False, False],
                              "bonds_prev": [[0, 0, 1, 1], [0, 0, 3, 1], [0] * 4, [0] * 4],
                              "current_block": 1000}
    kept = yuma_epoch(W, [1, 1, 0, 0], YumaParams(), block_at_registration=[0, 0, 0, 0],
                      **kwargs)
    assert kept.bonds[:, 2].tolist() == [0.25, 0.75, 0.0, 0.0]
    cleared = yuma_epoch(W, [1, 1, 0, 0], YumaParams(), block_at_registration=[0, 0, 640, 0],
                         **kwargs)
    assert cleared.bonds[:, 2].tolist() == [0.0] * 4
    assert yuma_epoch(W, [1, 1, 0, 0], YumaParams(), block_at_registration=[0, 0, 640, 0],
                      last_tempo=641, **kwargs).bonds[:, 2].tolist() == [0.25, 0.75, 0.0, 0.0]


def test_owner_is_exempt_from_threshold_permit_and_self_mask() -> None:
    """The owner keeps its stake under the threshold, always holds a permit, keeps its
    self-weight; another uid under the threshold loses its stake."""
    W = np.zeros((4, 4))
    W[2, 2] = W[2, 0] = 1.0
    out = yuma_epoch(W, [10, 10, 1, 2], YumaParams(stake_threshold=5, owner_uid=2,
                                                   max_allowed_validators=2),
                     validator_permit=[True, True, False, False])
    np.testing.assert_allclose(out.stake, [10 / 21, 10 / 21, 1 / 21, 0])
    assert out.new_validator_permit.tolist() == [True, True, True, False]
    assert out.weights_normalized[2].tolist() == [0.5, 0, 0.5, 0]
    assert out.active_stake[2] > 0


@PROPERTY_SETTINGS
@given(epochs())
def test_inputs_are_not_modified(epoch: Epoch) -> None:
    """yuma_epoch leaves its array inputs as they were."""
    before = {"W": epoch.W.copy(), "S": epoch.S.copy(),
              **{k: np.copy(v) for k, v in epoch.kwargs.items() if isinstance(v, np.ndarray)}}
    epoch.run()
    after = {"W": epoch.W, "S": epoch.S, **epoch.kwargs}
    for name, value in before.items():
        assert np.array_equal(after[name], value), name


def test_outputs_are_read_only() -> None:
    """Returned arrays cannot be modified in place."""
    out = yuma_epoch(np.ones((2, 2)), [1, 1])
    with pytest.raises(ValueError, match="read-only"):
        out.incentive[0] = 1.0


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((np.ones((2, 3)), [1, 1]), {}, "W must have shape"),
    ((np.ones((2, 2)), [[1, 1]]), {}, "S must be a vector"),
    ((np.ones((2, 2)), []), {}, "at least one uid"),
    ((np.ones((2, 2)), [1, -1]), {}, "S must be >= 0"),
    ((np.array([[0, np.nan], [1, 0]]), [1, 1]), {}, "W must be finite"),
    ((np.ones((2, 2)), [1, 1]), {"validator_permit": [True]}, "validator_permit must have"),
    ((np.ones((2, 2)), [1, 1]), {"validator_permit": [0.5, 1]}, "booleans"),
    ((np.ones((2, 2)), [1, 1]), {"bonds_prev": np.ones((2, 1))}, "bonds_prev must have"),
    ((np.ones((2, 2)), [1, 1]), {"bonds_prev": -np.ones((2, 2))}, "bonds_prev must be >= 0"),
    ((np.ones((2, 2)), [1, 1]), {"last_update": [1.5, 2]}, "integer block numbers"),
    ((np.ones((2, 2)), [1, 1]), {"current_block": 1.0}, "current_block must be an int"),
    ((np.ones((2, 2)), [1, 1], YumaParams(owner_uid=2)), {}, "owner_uid 2 is not a uid"),
    ((np.ones((2, 2)), [1, 1], YumaParams(yuma3=True)), {"bonds_prev": 2 * np.ones((2, 2))},
     "bonds_prev must be <= 1"),
    ((np.ones(2), [1, 1]), {}, "W must have shape"),
    (([[1, 2], [3]], [1, 1]), {}, "W is not a rectangular array"),
])
def test_inconsistent_inputs_raise(args: tuple[Any, ...], kwargs: dict[str, Any],
                                   match: str) -> None:
    """Wrong shapes, types or values raise ConsensusInputError (a ValueError) saying which."""
    with pytest.raises(ConsensusInputError, match=match) as info:
        yuma_epoch(*args, **kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("changes", [
    {"bonds_moving_average": 1.5}, {"bonds_penalty": -0.1}, {"owner_cut": 2.0},
    {"alpha_low": 0.9, "alpha_high": 0.8}, {"max_allowed_validators": -1},
    {"max_allowed_validators": 1.5}, {"kappa": float("nan")}, {"owner_uid": -1},
    {"subnet_emission": -1.0}, {"tempo": True},
])
def test_invalid_params_raise(changes: dict[str, Any]) -> None:
    """Out-of-range hyperparameters are refused when the params are built."""
    with pytest.raises(ConsensusInputError):
        YumaParams(**changes)
