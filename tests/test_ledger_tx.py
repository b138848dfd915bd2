"""Transaction admission: forged, replayed, wrong-chain, malformed and stateful rejections."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.calls import Register
from protocol.ledger.chain import Chain, ChainConfig
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.genesis import Genesis
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.machine import apply_tx
from protocol.ledger.state_codec import state_digest
from protocol.ledger.testing import ChainDriver, named_key
from protocol.ledger.tx import sign_tx


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[ChainDriver]:
    hyper = SubnetHyperparams(tempo=10, min_burn=T, weights_rate_limit=0, immunity_period=0)
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("alice", "bob"), hyperparams=hyper)
    yield drv
    drv.chain.close()


@contextmanager
def rejected(reason: Reason) -> Iterator[None]:
    """Expect a TxRejected carrying exactly ``reason``."""
    with pytest.raises(TxRejected) as info:
        yield
    assert info.value.reason is reason


def test_forged_signature_is_rejected(driver: ChainDriver) -> None:
    """A transaction whose signature is not the signer's is refused with bad_signature."""
    tx = driver.builder("alice").transfer(named_key("bob").address, T, nonce=0)
    forged = replace(tx, signature=bytes([tx.signature[0] ^ 1]) + tx.signature[1:])
    with rejected(Reason.BAD_SIGNATURE):
        driver.chain.submit(forged)
    impostor = replace(tx, signature=named_key("mallory").sign(tx.signing_bytes()))
    with rejected(Reason.BAD_SIGNATURE):
        driver.chain.submit(impostor)
    assert driver.chain.pending == 0


def test_register_needs_the_hotkeys_consent(driver: ChainDriver) -> None:
    """Registering someone else's hotkey fails: the cosignature must be the hotkey's."""
    driver.apply("alice", "create_subnet", max_lock_cost=T)
    victim = named_key("victim-hot")
    tx = sign_tx(Register(1, victim.public_key.raw, 10 * T), named_key("bob"), nonce=0,
                 chain_id=driver.chain.chain_id, cosigner=named_key("bob"))
    with rejected(Reason.BAD_SIGNATURE):
        driver.chain.submit(tx)


def test_replayed_transaction_is_rejected(driver: ChainDriver) -> None:
    """Resubmitting an included transaction fails with bad_sequence, in mempool and in a block."""
    tx = driver.builder("alice").transfer(named_key("bob").address, T, nonce=0)
    driver.chain.submit(tx)
    with rejected(Reason.BAD_SEQUENCE):
        driver.chain.submit(tx)
    driver.block()
    with rejected(Reason.BAD_SEQUENCE):
        driver.chain.submit(tx)
    state = driver.chain.state_view()
    with rejected(Reason.BAD_SEQUENCE):
        apply_tx(copy.deepcopy(state), tx, state.height + 1)
    assert driver.chain.account(named_key("alice").address).nonce == 1


def test_future_sequence_is_rejected(driver: ChainDriver) -> None:
    """A nonce that skips ahead of the signer's next one is refused."""
    tx = driver.builder("alice").transfer(named_key("bob").address, T, nonce=1)
    with rejected(Reason.BAD_SEQUENCE):
        driver.chain.submit(tx)


def test_wrong_chain_id_is_rejected(driver: ChainDriver, tmp_path: Path) -> None:
    """A transaction signed for another chain cannot be replayed here."""
    other = ChainDriver.open(tmp_path / "other.db", funded=("alice",),
                             hyperparams=SubnetHyperparams(tempo=11))
    tx = other.builder("alice").transfer(named_key("bob").address, T, nonce=0)
    other.chain.close()
    with rejected(Reason.BAD_CHAIN_ID):
        driver.chain.submit(tx)


def test_malformed_bytes_are_rejected(driver: ChainDriver) -> None:
    """Submitting bytes that are not a transaction fails with malformed."""
    with rejected(Reason.MALFORMED):
        driver.chain.submit(b"\x93\x01\x02\x03")


def test_faucet_only_on_dev_chain(tmp_path: Path) -> None:
    """The faucet mints on a dev chain and is refused (not_dev_chain) on any other."""
    key = named_key("authority")
    chain = Chain.open(tmp_path / "prod.db", ChainConfig(
        node_key=key, genesis=Genesis("prod", (key.address,))))
    try:
        tx = ChainDriver(chain).builder("alice").faucet(named_key("alice").address, T, nonce=0)
        with rejected(Reason.NOT_DEV_CHAIN):
            chain.submit(tx)
    finally:
        chain.close()
    dev = ChainDriver.open(tmp_path / "dev.db")
    outcome = dev.apply("alice", "faucet", named_key("alice").address, 5 * T)
    assert outcome.applied
    assert dev.chain.account(named_key("alice").address).balance == 5 * T
    dev.chain.close()


@pytest.mark.parametrize(("op", "args", "kwargs", "reason"), [
    ("transfer", ("bob", 10**6 * T), {}, Reason.INSUFFICIENT_BALANCE),
    ("unstake", ("alice-hot", T), {}, Reason.INSUFFICIENT_STAKE),
    ("stake", ("nobody-hot", T), {}, Reason.UNKNOWN_HOTKEY),
    ("register", (9,), {"max_burn": 10 * T}, Reason.UNKNOWN_SUBNET),
    ("register", (1,), {"max_burn": 1}, Reason.BURN_TOO_HIGH),
    ("set_hyperparams", (1, {"tempo": 0}), {}, Reason.INVALID_HYPERPARAMS),
    ("set_hyperparams", (1, {"emission_per_block": 5}), {}, Reason.NOT_PERMITTED),
])
def test_stateful_rejections_change_nothing(driver: ChainDriver, op: str, args: tuple[object, ...],
                                            kwargs: dict[str, object], reason: Reason) -> None:
    """Each stateful rule rejects with its typed reason and leaves the state digest unchanged."""
    driver.apply("alice", "create_subnet", max_lock_cost=T)
    keyed = tuple(named_key(a).address if isinstance(a, str) else a for a in args)
    if op == "register":
        kwargs = {**kwargs, "hotkey": named_key("fresh-hot")}
        keyed = (keyed[0],)
    state = driver.chain.state_view()
    before = state_digest(state)
    nonce = state.nonce(named_key("alice").public_key.raw)
    tx = getattr(driver.builder("alice"), op)(*keyed, nonce=nonce, **kwargs)
    with rejected(reason):
        apply_tx(state, tx, state.height + 1)
    assert state_digest(state) == before
    outcome = driver.apply("alice", op, *keyed, **kwargs)
    assert (outcome.applied, outcome.reason) == (False, reason)


def test_rejected_tx_in_block_is_left_out_and_later_ones_fail_sequence(
        driver: ChainDriver) -> None:
    """A failing queued tx is dropped; the signer's next queued tx then fails bad_sequence."""
    bob = named_key("bob").address
    first = driver.send("alice", "transfer", bob, 10**6 * T)
    second = driver.send("alice", "transfer", bob, T)
    result = driver.block()
    assert [(o.applied, o.reason) for o in result.outcomes] == [
        (False, Reason.INSUFFICIENT_BALANCE), (False, Reason.BAD_SEQUENCE)]
    assert [o.tx_hash for o in result.outcomes] == [first.tx_hash, second.tx_hash]
    assert driver.chain.account(named_key("alice").address).nonce == 0
