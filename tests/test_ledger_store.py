"""Storage: durable blocks, restart from the last committed block, verify, schema versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from protocol.errors import ConfigError
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger import verify
from protocol.ledger.builders import TxBuilder
from protocol.ledger.chain import Chain, ChainConfig
from protocol.ledger.errors import (
    ChainClosedError,
    CorruptChainError,
    Reason,
    SchemaVersionError,
    StoreError,
    TxRejected,
)
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.state_codec import state_digest
from protocol.ledger.testing import ChainDriver, named_key

HYPER = SubnetHyperparams(tempo=3, min_burn=T, weights_rate_limit=0, immunity_period=0)


def build(path: Path, blocks: int = 10, snapshot_interval: int = 100) -> ChainDriver:
    """A chain with a transfer in every block and a subnet with two neurons."""
    drv = ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER,
                           snapshot_interval=snapshot_interval)
    drv.apply("alice", "create_subnet", max_lock_cost=T)
    drv.apply("alice", "register", 1, named_key("a-hot"), max_burn=10 * T)
    drv.apply("bob", "register", 1, named_key("b-hot"), max_burn=10 * T)
    while drv.chain.height < blocks:
        drv.apply("alice", "transfer", named_key("bob").address, T)
    return drv


def sql(path: Path, statement: str, *args: object) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(statement, args)
    db.close()


def test_reopen_continues_at_the_same_block(tmp_path: Path) -> None:
    """After close and reopen the chain has the same height, head and state, and goes on."""
    path = tmp_path / "chain.db"
    drv = build(path)
    height, head = drv.chain.height, drv.chain.head_hash
    digest = state_digest(drv.chain.state_view())
    drv.chain.close()

    again = ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER)
    assert (again.chain.height, again.chain.head_hash) == (height, head)
    assert state_digest(again.chain.state_view()) == digest
    again.now_ms = drv.now_ms
    assert again.apply("alice", "transfer", named_key("bob").address, T).applied
    assert again.chain.height == height + 1
    again.chain.close()
    assert verify(path).height == height + 1


def test_restart_from_snapshot_replays_the_tail(tmp_path: Path) -> None:
    """With snapshots every 3 blocks, reopen loads the newest one and replays the rest."""
    path = tmp_path / "chain.db"
    drv = build(path, blocks=10, snapshot_interval=3)
    digest = state_digest(drv.chain.state_view())
    drv.chain.close()
    heights = [row[0] for row in sqlite3.connect(path).execute(
        "SELECT height FROM snapshots ORDER BY height")]
    assert heights == [0, 6, 9]
    again = ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER,
                             snapshot_interval=3)
    assert state_digest(again.chain.state_view()) == digest
    again.chain.close()
    report = verify(path)
    assert (report.height, report.blocks, report.snapshots_checked) == (10, 10, 3)
    assert report.state_digest == digest


@pytest.mark.parametrize(("statement", "height"), [
    ("UPDATE txs SET body = substr(body, 1, length(body) - 1) || x'01' WHERE height = 5", 5),
    ("UPDATE blocks SET timestamp_ms = timestamp_ms + 1 WHERE height = 7", 7),
    ("UPDATE blocks SET state_digest = zeroblob(32) WHERE height = 4", 4),
    ("DELETE FROM txs WHERE height = 6", 6),
    ("UPDATE blocks SET signature = zeroblob(64) WHERE height = 8", 8),
    ("UPDATE blocks SET tx_count = 'x', prev_hash = 'text' WHERE height = 3", 3),
    ("DELETE FROM blocks WHERE height = 9", 9),
])
def test_verify_names_the_corrupted_block(tmp_path: Path, statement: str, height: int) -> None:
    """Editing any part of a stored block makes verify (and reopen) fail naming that block."""
    path = tmp_path / "chain.db"
    build(path).chain.close()
    assert verify(path).height == 10
    sql(path, statement)
    with pytest.raises(CorruptChainError) as info:
        verify(path)
    assert info.value.height == height
    with pytest.raises(CorruptChainError) as again:
        ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER)
    assert again.value.height == height


def test_corrupted_snapshot_is_caught(tmp_path: Path) -> None:
    """A snapshot that differs from the replayed state is reported at its height."""
    path = tmp_path / "chain.db"
    build(path, blocks=7, snapshot_interval=3).chain.close()
    sql(path, "UPDATE snapshots SET state = state || x'00' WHERE height = 6")
    with pytest.raises(CorruptChainError) as info:
        verify(path)
    assert info.value.height == 6


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer schema version is not opened (clear error)."""
    path = tmp_path / "chain.db"
    build(path, blocks=4).chain.close()
    sql(path, "UPDATE schema_version SET version = 2")
    with pytest.raises(SchemaVersionError, match="upgrade"):
        ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER)
    with pytest.raises(SchemaVersionError):
        verify(path)


def test_other_genesis_and_foreign_files_are_refused(tmp_path: Path) -> None:
    """Opening with another chain's genesis, or a non-ledger file, fails clearly."""
    path = tmp_path / "chain.db"
    build(path, blocks=4).chain.close()
    with pytest.raises(ConfigError, match="another chain"):
        ChainDriver.open(path, funded=("carol",), hyperparams=HYPER)
    with pytest.raises(StoreError):
        verify(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE t (x)")
    with pytest.raises(SchemaVersionError):
        verify(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        verify(garbage)
    with pytest.raises(StoreError):
        ChainDriver.open(garbage)


def test_failed_commit_stops_the_chain_and_reopen_recovers(tmp_path: Path) -> None:
    """If a block cannot be committed the chain closes; reopening resumes at the last commit."""
    path = tmp_path / "chain.db"
    drv = build(path, blocks=5)
    committed = drv.chain.height

    def refuse(*args: object, **kwargs: object) -> None:
        raise StoreError("disk full")

    drv.chain._store.append = refuse  # type: ignore[method-assign]
    drv.send("alice", "transfer", named_key("bob").address, T)
    with pytest.raises(StoreError):
        drv.block()
    with pytest.raises(ChainClosedError):
        drv.chain.account(named_key("alice").address)
    again = ChainDriver.open(path, funded=("alice", "bob"), hyperparams=HYPER)
    assert again.chain.height == committed
    again.chain.close()


def test_dev_config_without_genesis_creates_then_reopens(tmp_path: Path) -> None:
    """ChainConfig(dev=True) alone creates a dev chain, reopens it, and refuses dev=False."""
    key = named_key("authority")
    path = tmp_path / "dev.db"
    chain = Chain.open(path, ChainConfig(node_key=key, dev=True))
    chain.produce_block(1_790_000_000_000)
    chain_id = chain.chain_id
    chain.close()
    again = Chain.open(path, ChainConfig(node_key=named_key("reader"), dev=True))
    assert (again.chain_id, again.height, again.genesis.dev) == (chain_id, 1, True)
    again.close()
    with pytest.raises(ConfigError, match="dev chain"):
        Chain.open(path, ChainConfig(node_key=key))
    with pytest.raises(ConfigError, match="no genesis"):
        Chain.open(tmp_path / "new.db", ChainConfig(node_key=key))
    assert not (tmp_path / "new.db").exists()


def test_mempool_is_bounded_in_bytes(tmp_path: Path) -> None:
    """Queued transactions never hold more than ``max_mempool_bytes`` of encodings; a block
    makes room again."""
    chain = Chain.open(tmp_path / "dev.db", ChainConfig(node_key=named_key("authority"),
                                                       dev=True, max_mempool_bytes=1_000))
    txs = [TxBuilder(named_key(f"k{i}"), chain.chain_id).faucet(named_key(f"k{i}").address, T,
                                                               nonce=0) for i in range(20)]
    size = len(txs[0].encode())
    fits = 1_000 // size
    for tx in txs[:fits]:
        chain.submit(tx)
    with pytest.raises(TxRejected) as full:
        chain.submit(txs[fits])
    assert full.value.reason is Reason.MEMPOOL_FULL
    assert chain.pending == fits
    chain.produce_block(1_790_000_000_000)
    chain.submit(txs[fits])
    chain.close()


def test_keys_the_chain_does_not_know_cannot_queue(tmp_path: Path) -> None:
    """A key with no balance, no transaction and no registration is refused at submit: its
    transactions could only fail, and would fill the mempool for nothing. A hotkey whose
    registration is queued, and a key with a queued faucet, may queue behind them."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("alice",))
    drv.apply("alice", "create_subnet", max_lock_cost=T)
    for i in range(5):
        with pytest.raises(TxRejected) as info:
            drv.send(f"stranger{i}", "serve", 1, "127.0.0.1", 9000, 1)
        assert info.value.reason is Reason.UNKNOWN_SIGNER
    assert drv.chain.pending == 0
    drv.send("alice", "register", 1, named_key("alice-hot"), max_burn=10 * T)
    drv.send("alice-hot", "serve", 1, "127.0.0.1", 9000, 1)
    drv.send("bob", "faucet", named_key("bob").address, 2 * T)
    drv.chain.submit(drv.builder("bob").transfer(named_key("alice").address, T, nonce=1))
    result = drv.block()
    assert [o.applied for o in result.outcomes] == [True] * 4
    drv.chain.close()


def test_a_hotkey_with_a_queued_registration_may_queue_only_a_few(tmp_path: Path) -> None:
    """A funded key registering many new hotkeys must not give each of them a full mempool
    allowance; once the registration lands, the hotkey has the usual one."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("alice",))
    drv.apply("alice", "create_subnet", max_lock_cost=T)
    drv.send("alice", "register", 1, named_key("alice-hot"), max_burn=10 * T)
    drv.send("alice-hot", "serve", 1, "127.0.0.1", 9000, 1)
    drv.send("alice-hot", "serve", 1, "127.0.0.1", 9001, 1)
    with pytest.raises(TxRejected) as info:
        drv.send("alice-hot", "serve", 1, "127.0.0.1", 9002, 1)
    assert info.value.reason is Reason.MEMPOOL_FULL
    assert "registration is still queued" in str(info.value)
    drv.block()
    for port in range(9002, 9012):  # registered now: the full allowance
        drv.send("alice-hot", "serve", 1, "127.0.0.1", port, 1)
    drv.chain.close()
