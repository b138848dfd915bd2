"""Epochs: the schedule, emission paid per the Yuma output in integers, issuance conserved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from protocol.consensus import YumaParams, yuma_epoch
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.epoch import SHARE_SCALE
from protocol.ledger.events import BurnAdjusted, EpochRun
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.testing import ChainDriver, named_key

HYPER = SubnetHyperparams(tempo=5, weights_rate_limit=0, immunity_period=0, min_burn=T,
                          activity_cutoff=1000, emission_per_block=1_000_000_007)
VALIDATORS = ("v1", "v2")
MINERS = ("m1", "m2")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[ChainDriver]:
    """Subnet 1 with validators v1 (300 T stake), v2 (100 T) and miners m1, m2; permits given."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", *VALIDATORS, *MINERS),
                           hyperparams=HYPER)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in (*VALIDATORS, *MINERS):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 300 * T)
    drv.send("v2", "stake", named_key("v2-hot").address, 100 * T)
    drv.run_to(drv.chain.subnet(1).next_epoch_block)
    yield drv
    drv.chain.close()


def test_epoch_schedule_follows_tempo_and_netuid(net: ChainDriver) -> None:
    """Subnet 1 with tempo 5 runs at the end of blocks h with (h + 1) % 5 == 0."""
    epochs = [(r.header.height, e.epoch) for r in net.blocks(10) for e in r.events
              if isinstance(e, EpochRun)]
    start = net.chain.height - 10
    assert [h for h, _ in epochs] == [h for h in range(start + 1, start + 11) if (h + 1) % 5 == 0]
    assert [n for _, n in epochs] == [epochs[0][1], epochs[0][1] + 1]


def test_emission_follows_yuma_output_in_integers(net: ChainDriver) -> None:
    """Miners, validators and owner get exactly the documented integer split of the epoch."""
    chain = net.chain
    assert list(chain.metagraph(1).validator_permit) == [True, True, False, False]
    net.send("v1-hot", "set_weights", 1, [2, 3], [65535, 20000])
    net.send("v2-hot", "set_weights", 1, [2, 3], [10000, 65535])
    net.block()
    epoch_block = chain.subnet(1).next_epoch_block
    net.run_to(epoch_block - 1)

    before = chain.metagraph(1)
    info = chain.subnet(1)
    owner_before = chain.account(named_key("owner").address).balance
    supply_before = chain.state_view().supply()
    result = net.block()

    weights = np.zeros((4, 4))
    weights[0, [2, 3]] = [65535, 20000]
    weights[1, [2, 3]] = [10000, 65535]
    out = yuma_epoch(
        weights, before.stake.astype(float),
        YumaParams(kappa=HYPER.kappa, bonds_moving_average=HYPER.bonds_moving_average,
                   activity_cutoff=HYPER.activity_cutoff, tempo=HYPER.tempo,
                   owner_cut=HYPER.owner_cut / 65535),
        validator_permit=before.validator_permit, bonds_prev=None,
        last_update=before.last_update, block_at_registration=before.registered_at,
        current_block=epoch_block, last_tempo=info.last_epoch_block + 1)
    pending = info.pending_emission + HYPER.emission_per_block
    owner = pending * HYPER.owner_cut // 65535
    rest = pending - owner
    server = [int(x) for x in np.floor(out.server_emission * SHARE_SCALE)]
    validator = [int(x) for x in np.floor(out.validator_emission * SHARE_SCALE)]
    total = sum(server) + sum(validator)
    pays = [rest * s // total + rest * v // total for s, v in zip(server, validator, strict=True)]

    after = chain.metagraph(1)
    assert list(after.stake - before.stake) == pays
    assert list(after.emission) == pays
    assert chain.account(named_key("owner").address).balance - owner_before == owner
    assert pays[2] > pays[3] > 0
    assert pays[0] > pays[1] > 0
    run = next(e for e in result.events if isinstance(e, EpochRun))
    assert (run.emission, run.owner_paid) == (pending, owner)
    assert run.miners_paid == sum(rest * s // total for s in server)
    assert run.owner_paid + run.miners_paid + run.validators_paid + run.carried == pending
    assert chain.subnet(1).pending_emission == run.carried < 4
    np.testing.assert_allclose(after.incentive, np.floor(out.incentive * 65535) / 65535)
    supply = chain.state_view().supply()
    assert supply.issuance == supply_before.issuance + HYPER.emission_per_block
    assert supply.accounted == supply.issuance


def test_fallback_pays_validators_by_active_stake(net: ChainDriver) -> None:
    """With no weights at all, miners get nothing and validators split by stake (3:1)."""
    before = net.chain.metagraph(1)
    net.blocks(HYPER.tempo)
    after = net.chain.metagraph(1)
    gained = after.stake - before.stake
    assert list(gained[2:]) == [0, 0]
    assert gained[0] == pytest.approx(3 * gained[1], rel=1e-2)


def test_burn_rises_with_registrations_and_decays_without(tmp_path: Path) -> None:
    """The registration cost moves toward the target rate every adjustment interval."""
    hyper = SubnetHyperparams(tempo=50, min_burn=T, max_burn=100 * T, adjustment_interval=4,
                              target_registrations_per_interval=1, immunity_period=0)
    drv = ChainDriver.open(tmp_path / "c.db", funded=("owner", "a"), hyperparams=hyper)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for i in range(3):
        drv.send("a", "register", 1, named_key(f"hot{i}"), max_burn=100 * T)
    events = [e for r in drv.blocks(8) for e in r.events if isinstance(e, BurnAdjusted)]
    assert events == [BurnAdjusted(1, T, 2 * T), BurnAdjusted(1, 2 * T, T)]
    drv.chain.close()
