"""uid slots: pruning the weakest neuron, and a new holder inheriting nothing of the old one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.errors import Reason
from protocol.ledger.events import Pruned, Registered
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.testing import ChainDriver, named_key

HYPER = SubnetHyperparams(tempo=5, weights_rate_limit=0, immunity_period=3, max_allowed_uids=3,
                          min_burn=T, activity_cutoff=1000)


def epoch(drv: ChainDriver) -> None:
    """Run blocks through the subnet's next epoch."""
    drv.run_to(drv.chain.subnet(1).next_epoch_block)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[ChainDriver]:
    """Full subnet: validator v (uid 0), miners m1 (uid 1) and m2 (uid 2), v weights 3:1."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", "v", "m1", "m2", "m3"),
                           hyperparams=HYPER)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v", "m1", "m2"):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.send("v", "stake", named_key("v-hot").address, 100 * T)
    drv.send("v-hot", "serve", 1, "10.0.0.2", 9000, 1)
    epoch(drv)
    assert drv.apply("v-hot", "set_weights", 1, [1, 2], [60000, 20000]).applied
    epoch(drv)
    yield drv
    drv.chain.close()


def test_full_subnet_prunes_lowest_emission(net: ChainDriver) -> None:
    """A registration into a full subnet replaces the non-immune neuron with least emission."""
    mg = net.chain.metagraph(1)
    assert mg.incentive[1] > mg.incentive[2] > 0
    assert mg.emission[2] == min(mg.emission)
    outcome = net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    assert outcome.events == (
        Pruned(1, 2, named_key("m2-hot").address),
        Registered(1, 2, named_key("m3-hot").address, named_key("m3").address, T))
    assert net.chain.metagraph(1).hotkeys[2] == named_key("m3-hot").address


def test_all_immune_means_subnet_full(net: ChainDriver) -> None:
    """While every neuron is inside its immunity period, registration fails with subnet_full."""
    net.apply("owner", "set_hyperparams", 1, {"immunity_period": 10_000})
    outcome = net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    assert (outcome.applied, outcome.reason) == (False, Reason.SUBNET_FULL)


def test_new_holder_inherits_nothing(net: ChainDriver) -> None:
    """The new holder of a slot starts clean: no weights on it, no bonds, no score, no permit."""
    state = net.chain.state_view()
    subnet = state.subnets[1]
    assert 2 in subnet.neurons[0].weights
    assert 2 in subnet.neurons[0].bonds
    net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    fresh = subnet.neurons[2]
    assert all(2 not in n.weights and 2 not in n.bonds for n in subnet.neurons)
    assert (fresh.weights, fresh.bonds, fresh.emission, fresh.incentive) == ({}, {}, 0, 0)
    assert (fresh.validator_permit, fresh.endpoint) == (False, None)
    assert fresh.registered_at == fresh.last_update == net.chain.height


def test_validator_weights_stop_counting_for_a_reused_uid(net: ChainDriver) -> None:
    """The new holder earns 0 incentive until validators set weights after its registration."""
    net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    epoch(net)
    mg = net.chain.metagraph(1)
    assert (mg.incentive[2], mg.emission[2]) == (0.0, 0)
    assert mg.incentive[1] == 1.0
    epoch(net)
    assert net.chain.metagraph(1).incentive[2] == 0.0

    assert net.apply("v-hot", "set_weights", 1, [1, 2], [60000, 20000]).applied
    epoch(net)
    mg = net.chain.metagraph(1)
    assert 0 < mg.incentive[2] < mg.incentive[1]
    assert mg.emission[2] > 0


def test_weights_set_in_the_registration_block_do_not_carry_over(net: ChainDriver) -> None:
    """Weights naming the old holder, set in the same block just before, are cleared too."""
    net.send("v-hot", "set_weights", 1, [1, 2], [60000, 60000])
    net.send("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    result = net.block()
    assert all(o.applied for o in result.outcomes)
    assert net.chain.neuron(1, 0).weights == ((1, 60000),)
    epoch(net)
    assert net.chain.metagraph(1).incentive[2] == 0.0


def test_pruned_hotkey_keeps_its_stake_and_owner(net: ChainDriver) -> None:
    """Stake stays with the identity that earned it, not with the slot."""
    m2 = named_key("m2-hot").address
    staked = net.chain.account(m2).staked_on
    assert staked > 0
    net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T)
    assert net.chain.account(m2).staked_on == staked
    assert net.chain.account(m2).owner == named_key("m2").address
    assert net.chain.metagraph(1).stake[2] == 0
