"""Weights: permits, rate limit, validation rules, and commit-reveal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.events import CommitExpired, WeightsRevealed
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.testing import ChainDriver, named_key

HYPER = SubnetHyperparams(tempo=5, weights_rate_limit=0, immunity_period=0, min_burn=T,
                          activity_cutoff=1000, max_allowed_validators=1)
SALT = bytes(range(16))


def epoch(drv: ChainDriver) -> None:
    """Run blocks through the subnet's next epoch."""
    drv.run_to(drv.chain.subnet(1).next_epoch_block)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[ChainDriver]:
    """Validator v (uid 0, the only permit), miners m1 (uid 1), m2 (uid 2)."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", "v", "m1", "m2", "m3"),
                           hyperparams=HYPER)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v", "m1", "m2"):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.send("v", "stake", named_key("v-hot").address, 100 * T)
    epoch(drv)
    yield drv
    drv.chain.close()


def reason_of(drv: ChainDriver, name: str, op: str, *args: object) -> Reason | None:
    return drv.apply(name, op, *args).reason


def test_only_permit_holders_set_weights(net: ChainDriver) -> None:
    """A neuron without a validator permit is refused; a key holding no uid too, and a key
    the chain knows nothing of already at submit."""
    assert reason_of(net, "m1-hot", "set_weights", 1, [2], [1]) is Reason.NOT_PERMITTED
    assert reason_of(net, "m3", "set_weights", 1, [2], [1]) is Reason.UNKNOWN_HOTKEY
    with pytest.raises(TxRejected) as info:
        net.send("m3-hot", "set_weights", 1, [2], [1])
    assert info.value.reason is Reason.UNKNOWN_SIGNER
    assert reason_of(net, "v-hot", "set_weights", 1, [1, 2], [1, 1]) is None


def test_weights_rate_limit(net: ChainDriver) -> None:
    """A second set within weights_rate_limit blocks is rate_limited."""
    net.apply("owner", "set_hyperparams", 1, {"weights_rate_limit": 3})
    net.blocks(3)
    assert reason_of(net, "v-hot", "set_weights", 1, [1], [1]) is None
    assert reason_of(net, "v-hot", "set_weights", 1, [1], [1]) is Reason.RATE_LIMITED
    net.blocks(1)
    assert reason_of(net, "v-hot", "set_weights", 1, [1], [1]) is None


@pytest.mark.parametrize(("uids", "weights", "changes"), [
    ([1, 2], [1], {}),
    ([1, 1], [1, 1], {}),
    ([1, 7], [1, 1], {}),
    ([1, 2], [1, 0], {"min_allowed_weights": 2}),
    ([1, 2], [3, 1], {"max_weight_limit": 32768}),
    ([], [], {}),
])
def test_invalid_weights(net: ChainDriver, uids: list[int], weights: list[int],
                         changes: dict[str, int]) -> None:
    """Length mismatch, duplicates, unknown uids, too few non-zero, too heavy a weight."""
    if changes:
        net.apply("owner", "set_hyperparams", 1, changes)
    assert reason_of(net, "v-hot", "set_weights", 1, uids, weights) is Reason.INVALID_WEIGHTS


def test_min_allowed_weights_is_capped_by_neuron_count(net: ChainDriver) -> None:
    """min_allowed_weights above n asks for n non-zero weights, not more."""
    net.apply("owner", "set_hyperparams", 1, {"min_allowed_weights": 100})
    assert reason_of(net, "v-hot", "set_weights", 1, [1, 2], [1, 1]) is Reason.INVALID_WEIGHTS
    assert reason_of(net, "v-hot", "set_weights", 1, [0, 1, 2], [1, 1, 1]) is None


def enable_commit_reveal(net: ChainDriver) -> None:
    """Turn commit-reveal on, then run to an epoch so the next one is a full tempo away."""
    net.apply("owner", "set_hyperparams", 1, {"commit_reveal": True, "reveal_period": 1})
    epoch(net)


def test_commit_then_reveal_next_epoch(net: ChainDriver) -> None:
    """A commit reveals in the next epoch (not before); the row then counts in the epoch."""
    enable_commit_reveal(net)
    assert reason_of(net, "v-hot", "set_weights", 1, [1], [1]) is Reason.COMMIT_REVEAL_REQUIRED
    assert net.apply("v-hot", "commit_weights", 1, [1, 2], [65535, 30000], SALT).applied
    assert reason_of(net, "v-hot", "commit_weights", 1, [1], [1], SALT) is Reason.COMMIT_PENDING
    early = net.apply("v-hot", "reveal_weights", 1, [1, 2], [65535, 30000], SALT)
    assert early.reason is Reason.BAD_REVEAL

    epoch(net)
    outcome = net.apply("v-hot", "reveal_weights", 1, [1, 2], [65535, 30000], SALT)
    assert outcome.events == (WeightsRevealed(1, 0, named_key("v-hot").address, 2),)
    assert net.chain.neuron(1, 0).weights == ((1, 65535), (2, 30000))
    epoch(net)
    mg = net.chain.metagraph(1)
    assert mg.incentive[1] > mg.incentive[2] > 0


def test_reveal_with_wrong_salt_is_bad_reveal(net: ChainDriver) -> None:
    """Revealing with another salt (or other weights) does not match the digest."""
    enable_commit_reveal(net)
    net.apply("v-hot", "commit_weights", 1, [1, 2], [65535, 30000], SALT)
    epoch(net)
    wrong_salt = net.apply("v-hot", "reveal_weights", 1, [1, 2], [65535, 30000], b"x" * 16)
    wrong_row = net.apply("v-hot", "reveal_weights", 1, [1, 2], [65535, 30001], SALT)
    assert (wrong_salt.reason, wrong_row.reason) == (Reason.BAD_REVEAL, Reason.BAD_REVEAL)
    assert net.chain.neuron(1, 0).weights == ()


def test_unrevealed_commit_expires_with_event(net: ChainDriver) -> None:
    """A commit not revealed in its reveal epoch is dropped at the next epoch, with an event."""
    enable_commit_reveal(net)
    committed = net.apply("v-hot", "commit_weights", 1, [1], [1], SALT)
    commit_block = committed.height
    epoch(net)
    results = []
    while not any(isinstance(e, CommitExpired) for r in results for e in r.events):
        results.append(net.block())
    expired = [e for r in results for e in r.events if isinstance(e, CommitExpired)]
    assert expired == [CommitExpired(1, named_key("v-hot").address, commit_block)]
    assert results[-1].header.height == net.chain.subnet(1).last_epoch_block
    late = net.apply("v-hot", "reveal_weights", 1, [1], [1], SALT)
    assert late.reason is Reason.BAD_REVEAL
    assert net.apply("v-hot", "commit_weights", 1, [2], [1], SALT).applied


def test_reveal_drops_uids_reregistered_after_the_commit(net: ChainDriver) -> None:
    """A revealed row does not count for a slot whose holder changed after the commit."""
    net.apply("owner", "set_hyperparams", 1, {"max_allowed_uids": 3})
    enable_commit_reveal(net)
    net.apply("v-hot", "commit_weights", 1, [1, 2], [65535, 65535], SALT)
    assert net.apply("m3", "register", 1, named_key("m3-hot"), max_burn=10 * T).applied
    epoch(net)
    outcome = net.apply("v-hot", "reveal_weights", 1, [1, 2], [65535, 65535], SALT)
    assert outcome.applied
    # miners without weights earn nothing, so the lowest uid among them (1) was replaced
    assert net.chain.metagraph(1).hotkeys[1] == named_key("m3-hot").address
    assert net.chain.neuron(1, 0).weights == ((2, 65535),)


def test_commit_without_commit_reveal_is_refused(net: ChainDriver) -> None:
    """commit_weights on a subnet without commit-reveal fails commit_reveal_disabled."""
    assert (reason_of(net, "v-hot", "commit_weights", 1, [1], [1], SALT)
            is Reason.COMMIT_REVEAL_DISABLED)
