"""End of block for each subnet: accrue emission, run the Yuma epoch when due, pay out.

Schedule: subnet ``netuid`` runs its epoch at the end of block ``h`` when
``(h + netuid) % tempo == 0`` (offset by netuid so subnets with equal tempo do not all run in
the same block).

Payout arithmetic (all integers, docs/spec-ledger.md §11.4):
``owner = pending * owner_cut // 65535`` goes to the owner's balance; the rest ``R`` is split
by the epoch's per-uid ``server_emission`` and ``validator_emission`` shares ``s``:
``q = floor(s * 2**52)``, ``pay = R * q // sum(q)``, credited to the stake of
``(hotkey, owning coldkey)``. ``R - sum(pay)`` (floor remainders, or all of ``R`` if every
share is 0) stays pending for the next epoch, so issuance is conserved exactly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from protocol.consensus import YumaOutput, YumaParams, yuma_epoch
from protocol.ledger.events import EpochRun, Event
from protocol.ledger.registration import adjust_burn
from protocol.ledger.state import LedgerState, Subnet
from protocol.ledger.units import MAX_SUPPLY, U16_ONE
from protocol.ledger.weights import expire_commits

__all__ = ["SHARE_SCALE", "end_block", "epoch_due", "run_epoch"]

#: Shares are floats in [0, 1]; 2**52 keeps every bit of their float64 mantissa at 1.0.
SHARE_SCALE = 2**52


def epoch_due(subnet: Subnet, height: int) -> bool:
    """Whether ``subnet`` runs its epoch at the end of block ``height``."""
    return (height + subnet.netuid) % subnet.hyperparams.tempo == 0


def end_block(state: LedgerState, height: int) -> list[Event]:
    """Per subnet, in netuid order: accrue this block's emission, run a due epoch, adjust burn."""
    events: list[Event] = []
    for netuid in sorted(state.subnets):
        subnet = state.subnets[netuid]
        minted = min(subnet.hyperparams.emission_per_block, MAX_SUPPLY - state.issuance)
        subnet.pending_emission += minted
        state.issuance += minted
        if epoch_due(subnet, height):
            events.extend(run_epoch(state, subnet, height))
        events.extend(adjust_burn(subnet, height))
    return events


def run_epoch(state: LedgerState, subnet: Subnet, height: int) -> list[Event]:
    """Run Yuma on the stored weights and stake, store its outputs, pay the pending emission."""
    pending = subnet.pending_emission
    owner_paid = pending * subnet.hyperparams.owner_cut // U16_ONE
    if owner_paid:
        state.account_for_update(subnet.owner).balance += owner_paid
    rest = pending - owner_paid
    miners = validators = 0
    if subnet.neurons:
        out = _yuma(state, subnet, height)
        _store_outputs(subnet, out)
        miners, validators = _pay(state, subnet, out, rest)
    carried = rest - miners - validators
    subnet.pending_emission = carried
    subnet.epochs_run += 1
    subnet.last_epoch_block = height
    run = EpochRun(subnet.netuid, height, subnet.epochs_run, len(subnet.neurons), pending,
                   owner_paid, miners, validators, carried)
    return [run, *expire_commits(subnet)]


def _yuma(state: LedgerState, subnet: Subnet, height: int) -> YumaOutput:
    """Build the epoch inputs from the stored state (YUMA.md §2) and run it."""
    neurons, hyper = subnet.neurons, subnet.hyperparams
    n = len(neurons)
    weights = np.zeros((n, n))
    bonds = np.zeros((n, n))
    for neuron in neurons:
        if neuron.weights:
            weights[neuron.uid, list(neuron.weights)] = list(neuron.weights.values())
        if neuron.bonds:
            bonds[neuron.uid, list(neuron.bonds)] = list(neuron.bonds.values())
    params = YumaParams(
        kappa=hyper.kappa, bonds_penalty=hyper.bonds_penalty,
        bonds_moving_average=hyper.bonds_moving_average, yuma3=hyper.yuma3,
        liquid_alpha=hyper.liquid_alpha, alpha_low=hyper.alpha_low, alpha_high=hyper.alpha_high,
        alpha_sigmoid_steepness=hyper.alpha_sigmoid_steepness,
        max_allowed_validators=hyper.max_allowed_validators,
        activity_cutoff=hyper.activity_cutoff, tempo=hyper.tempo,
        stake_threshold=float(hyper.stake_threshold), owner_uid=None,
        subnet_emission=1.0, owner_cut=hyper.owner_cut / U16_ONE)
    return yuma_epoch(
        weights,
        np.array([float(state.hotkey_stake(n.hotkey)) for n in neurons]),
        params,
        validator_permit=np.array([n.validator_permit for n in neurons], dtype=bool),
        bonds_prev=bonds / U16_ONE if bonds.any() else None,
        last_update=np.array([n.last_update for n in neurons], dtype=np.int64),
        block_at_registration=np.array([n.registered_at for n in neurons], dtype=np.int64),
        current_block=height,
        last_tempo=subnet.last_epoch_block + 1 if subnet.epochs_run else None,
    )


def _unit_interval(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Clamp epoch outputs into [0, 1] (NaN as 0), so float round-off can never turn into a
    negative payment or an out-of-range stored value."""
    return np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)


def _u16(values: NDArray[np.float64]) -> list[int]:
    """Floor ``x * 65535``, as the reference chain stores proportions."""
    return [int(v) for v in np.floor(_unit_interval(values) * U16_ONE)]


def _store_outputs(subnet: Subnet, out: YumaOutput) -> None:
    columns = zip(_u16(out.incentive), _u16(out.dividends), _u16(out.trust),
                  _u16(out.consensus), _u16(out.validator_trust),
                  out.new_validator_permit.tolist(), out.active.tolist(), strict=True)
    bond_rows = _quantised_bonds(out.bonds, yuma3=subnet.hyperparams.yuma3)
    for neuron, cols, bonds in zip(subnet.neurons, columns, bond_rows, strict=True):
        (neuron.incentive, neuron.dividends, neuron.trust, neuron.consensus,
         neuron.validator_trust, neuron.validator_permit, neuron.active) = cols
        neuron.bonds = bonds


def _quantised_bonds(bonds: NDArray[np.float64], *, yuma3: bool) -> list[dict[int, int]]:
    """Bonds as stored u16 rows (YUMA.md §3.12): Yuma3 floor(b*65535), Yuma2 per-column
    max-upscaled to 65535 (only column proportions matter to the next Yuma2 epoch)."""
    if yuma3:
        scaled = bonds * U16_ONE
    else:
        column_max = bonds.max(axis=0, initial=0.0)
        scaled = np.divide(bonds * U16_ONE, column_max, out=np.zeros_like(bonds),
                           where=column_max > 0)
    q = np.floor(np.clip(np.nan_to_num(scaled, nan=0.0), 0, U16_ONE)).astype(np.int64)
    return [{int(j): int(q[i, j]) for j in np.flatnonzero(q[i])} for i in range(q.shape[0])]


def _pay(state: LedgerState, subnet: Subnet, out: YumaOutput, rest: int) -> tuple[int, int]:
    """Credit each uid's integer share of ``rest`` to its stake; return (miners, validators)."""
    server = [int(x) for x in np.floor(_unit_interval(out.server_emission) * SHARE_SCALE)]
    validator = [int(x) for x in np.floor(_unit_interval(out.validator_emission) * SHARE_SCALE)]
    total = sum(server) + sum(validator)
    miners = validators = 0
    for neuron, s_share, v_share in zip(subnet.neurons, server, validator, strict=True):
        s_pay = rest * s_share // total if total else 0
        v_pay = rest * v_share // total if total else 0
        neuron.emission = s_pay + v_pay
        if neuron.emission:
            state.add_stake(neuron.hotkey, state.owners[neuron.hotkey], neuron.emission)
        miners += s_pay
        validators += v_pay
    return miners, validators
