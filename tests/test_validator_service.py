"""The validator loop against real miners on 127.0.0.1 and a real embedded SQLite ledger."""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from miners.backends.deterministic import EchoMathBackend
from miners.backends.faulty import GarbageBackend, HangingBackend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol.client import Client, Timeouts
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.remote import RemoteLedger
from protocol.ledger.testing import ChainDriver, named_key
from tests.conftest import closed_port
from validators.service import Validator, ValidatorConfig, derive_secret
from validators.state import load_state

MINERS = {"good": EchoMathBackend, "garbage": GarbageBackend, "hang": HangingBackend}
FAST = Timeouts(connect=1.0, first_byte=0.6, total=0.6)


@dataclass
class Net:
    """A dev chain with one validator and three serving miners."""

    driver: ChainDriver
    ledger: EmbeddedLedger
    servers: dict[str, MinerServer]

    async def block(self) -> None:
        """Produce the next block through the async ledger."""
        self.driver.now_ms += 1000
        await self.ledger.produce_block(self.driver.now_ms)


async def _network(tmp_path: Path, hyper: SubnetHyperparams,
                   stack: AsyncExitStack) -> Net:
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", "v1", *MINERS),
                           hyperparams=hyper)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v1", *MINERS):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 100 * T)
    servers = {}
    for name, backend in MINERS.items():
        server = MinerServer(named_key(f"{name}-hot"), ServerConfig())
        add_model_routes(server, backend())
        await stack.enter_async_context(server)
        drv.send(f"{name}-hot", "serve", 1, "127.0.0.1", server.port, 1)
        servers[name] = server
    drv.run_to(drv.chain.subnet(1).next_epoch_block)  # the epoch grants v1 its permit
    return Net(drv, EmbeddedLedger(drv.chain), servers)



def _validator(net: Net, client: Client, tmp_path: Path) -> Validator:
    key = named_key("v1-hot")
    config = ValidatorConfig(netuid=1, secret=derive_secret(key),
                             state_path=tmp_path / "validator.state", sample_size=3,
                             weights_interval=2, timeouts=FAST)
    return Validator(key, net.ledger, client, config)


async def test_scores_follow_answer_quality_and_weights_reach_incentive(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    """The exact miner scores high, garbage and hanging miners score 0; incentive follows."""
    hyper = SubnetHyperparams(tempo=4, weights_rate_limit=0, immunity_period=0, min_burn=T,
                              activity_cutoff=1000)
    net = await _network(tmp_path, hyper, stack)
    client = await stack.enter_async_context(Client(named_key("v1-hot")))
    validator = _validator(net, client, tmp_path)
    for _ in range(6):
        report = await validator.step()
        assert report.queried == 3
        await net.block()
    await validator.aclose()
    scores = {identity.hotkey: value for identity, value in validator.state.scores.items()}
    by_name = {name: scores[named_key(f"{name}-hot").address] for name in MINERS}
    assert by_name["good"] > 0.3
    assert by_name["garbage"] == 0.0
    assert by_name["hang"] == 0.0
    metagraph = await net.ledger.metagraph(1)
    incentive = dict(zip(metagraph.hotkeys, metagraph.incentive, strict=True))
    assert incentive[named_key("good-hot").address] > 0.99


async def test_commit_reveal_weights_are_revealed_on_time(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    """With commit-reveal on, the validator commits, reveals one epoch later, and it counts."""
    hyper = SubnetHyperparams(tempo=3, weights_rate_limit=0, immunity_period=0, min_burn=T,
                              activity_cutoff=1000, commit_reveal=True, reveal_period=1)
    net = await _network(tmp_path, hyper, stack)
    client = await stack.enter_async_context(Client(named_key("v1-hot")))
    validator = _validator(net, client, tmp_path)
    lines = []
    for _ in range(12):
        lines.append((await validator.step()).weights)
        await net.block()
    await validator.aclose()
    assert any(re.search(r"commit \d+ uids: ok", w) for w in lines), lines
    assert any(re.search(r"reveal \d+ uids: ok", w) for w in lines), lines
    me = await net.ledger.neuron(1, named_key("v1-hot").address)
    assert me.weights, "revealed weights are stored on the ledger"
    saved = load_state(tmp_path / "validator.state")
    assert saved is not None
    assert saved.step == 12


async def test_state_survives_a_new_validator_object(tmp_path: Path,
                                                     stack: AsyncExitStack) -> None:
    """Scores saved after each step are loaded by a fresh validator (restart)."""
    hyper = SubnetHyperparams(tempo=50, weights_rate_limit=0, immunity_period=0, min_burn=T,
                              activity_cutoff=1000)
    net = await _network(tmp_path, hyper, stack)
    client = await stack.enter_async_context(Client(named_key("v1-hot")))
    first = _validator(net, client, tmp_path)
    for _ in range(2):
        await first.step()
    second = _validator(net, client, tmp_path)
    second.load()
    assert second.state.step == 2
    assert dict(second.state.scores.items()) == dict(first.state.scores.items())
    assert len(second.state.receipts.to_dict()["items"]) > 0



async def test_an_unreachable_chain_node_does_not_end_the_loop(
        tmp_path: Path, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture) -> None:
    """With the node down, ``run`` logs, backs off and keeps going until it is stopped."""
    key = named_key("v1-hot")
    ledger = await stack.enter_async_context(RemoteLedger(f"http://127.0.0.1:{closed_port()}"))
    client = await stack.enter_async_context(Client(key))
    config = ValidatorConfig(netuid=1, secret=derive_secret(key),
                             state_path=tmp_path / "validator.state", retry_s=0.02,
                             max_retry_s=0.05)
    validator = Validator(key, ledger, client, config)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="ensemble.validator")
    loop = asyncio.create_task(validator.run(stop))
    await asyncio.sleep(0.4)
    assert not loop.done(), loop
    stop.set()
    await asyncio.wait_for(loop, 2.0)  # returns, raises nothing
    failures = [r for r in caplog.records if "ledger unavailable" in r.getMessage()]
    assert len(failures) >= 3
    assert "retrying in 0.05 s" in failures[-1].getMessage()
