"""``ensemble status``: a dev chain file with one live and one dead serving miner."""

from __future__ import annotations

import argparse
import re
import socket
import time
from pathlib import Path

import pytest

from miners.backends.deterministic import EchoMathBackend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol.cli import status
from protocol.cli.ledger_cmds import short_address
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.chain import Chain, ChainConfig
from protocol.ledger.connect import dev_authority_key
from protocol.ledger.genesis import Genesis, NetworkParams
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.testing import ChainDriver, named_key

ALIVE, DEAD = named_key("alive-hot"), named_key("dead-hot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble")
    status.register(parser.add_subparsers())
    return parser


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dev_chain(path: Path) -> ChainDriver:
    """Like ChainDriver.open, but with the well-known dev authority so that
    ``--chain PATH`` can keep producing blocks, and a clock just behind real time."""
    params = NetworkParams(subnet_lock_cost=T, default_hyperparams=SubnetHyperparams(
        tempo=5, immunity_period=0, min_burn=T, activity_cutoff=1000))
    funded = tuple((named_key(n).address, 10_000 * T) for n in ("owner", "alive", "dead"))
    genesis = Genesis.for_dev(dev_authority_key().address, funded, params)
    drv = ChainDriver(Chain.open(path, ChainConfig(node_key=dev_authority_key(),
                                                   genesis=genesis, dev=True)))
    drv.now_ms = int(time.time() * 1000) - 3_600_000
    return drv


async def _network(tmp_path: Path, server: MinerServer) -> tuple[Path, int, int]:
    """Subnet 1 with a serving live miner and a serving dead one; returns (db, uid, height)."""
    db = tmp_path / "chain.db"
    drv = _dev_chain(db)
    try:
        drv.apply("owner", "create_subnet", max_lock_cost=T)
        for name, key in (("alive", ALIVE), ("dead", DEAD)):
            drv.send(name, "register", 1, key, max_burn=10 * T)
        drv.block()
        drv.send("alive-hot", "serve", 1, "127.0.0.1", server.port, 1)
        drv.send("dead-hot", "serve", 1, "127.0.0.1", _free_port(), 1)
        drv.blocks(3)
        uid = drv.chain.neuron(1, ALIVE.address).uid
        height = drv.chain.height
    finally:
        drv.chain.close()  # the status command owns the file next (one owner at a time)
    return db, uid, height


def _row(out: str, hotkey: str) -> list[str]:
    (line,) = [ln for ln in out.splitlines() if short_address(hotkey) in ln]
    return [cell.strip() for cell in line.split("│")[1:-1]]


async def test_status_shows_block_uids_and_live_health(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The overview names the block height, tempo, and marks the live miner alive (queue 0)
    and the one with nothing listening dead."""
    async with MinerServer(ALIVE, ServerConfig()) as server:
        add_model_routes(server, EchoMathBackend())
        db, uid, height = await _network(tmp_path, server)
        args = _parser().parse_args(["status", "--chain", str(db), "--netuid", "1"])
        started = time.monotonic()
        assert await status.status(args) == 0
        assert time.monotonic() - started < 5
    out = capsys.readouterr().out
    shown = int(re.search(r"block height\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    assert height <= shown <= height + 3  # the command's own timer may add a block
    assert re.search(r"tempo\s+5 blocks", out)
    assert re.search(r"commit_reveal\s+off", out)
    assert "next epoch block" in out
    alive = _row(out, ALIVE.address)
    assert alive[0] == str(uid)
    assert alive[-2] == "alive"
    assert alive[-1] == "0"  # queue depth of an idle miner
    assert alive[-3] == f"127.0.0.1:{server.port}"
    dead = _row(out, DEAD.address)
    assert dead[-2].startswith("dead")


async def test_watch_refreshes_until_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--watch off a terminal prints one overview per refresh (here stopped after two)."""
    async with MinerServer(ALIVE, ServerConfig()) as server:
        add_model_routes(server, EchoMathBackend())
        db, _, _ = await _network(tmp_path, server)
        args = _parser().parse_args(["status", "--chain", str(db), "--netuid", "1", "--watch",
                                     "--interval", "0.2", "--refreshes", "2"])
        assert await status.status(args) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"block height", out)) == 2
    assert out.count("alive") >= 2


def test_unknown_subnet_is_explained(tmp_path: Path) -> None:
    """A missing subnet raises the ledger commands' helpful error (exit 1 under main)."""
    db = tmp_path / "chain.db"
    _dev_chain(db).chain.close()
    args = _parser().parse_args(["status", "--chain", str(db), "--netuid", "7"])
    with pytest.raises(Exception, match="no subnet 7"):
        args.handler(args)
