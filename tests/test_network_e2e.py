"""End to end: graded real models, a garbage and a hanging miner, two validators, real epochs.

Incentive must follow true model quality, by measurement: after enough epochs the incentive
order of the four graded miners equals their known quality order (Spearman >= 0.9) and the two
broken miners together hold under 2 % of incentive. Everything is real: tiny transformer models
behind signed miner servers on 127.0.0.1, validators querying them through the signed client,
an embedded SQLite dev ledger producing blocks on a timer, Yuma Consensus at every epoch.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from pathlib import Path

import numpy as np
import pytest

from miners.backends.faulty import GarbageBackend, HangingBackend
from miners.backends.registry import BackendOptions, load_backend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol.client import Client, Timeouts
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.testing import ChainDriver, named_key
from validators.service import Validator, ValidatorConfig, derive_secret
from validators.tasks import SelectionConfig

ROOT = Path(__file__).parents[1]
GRADED = ("q10", "q60", "q90", "q99")  # known quality order, worst first
BROKEN = ("garbage", "hang")
VALIDATORS = {"v1": 100 * T, "v2": 60 * T}
HYPER = SubnetHyperparams(tempo=5, weights_rate_limit=0, immunity_period=0, min_burn=T,
                          activity_cutoff=1000, max_allowed_validators=2)
STEPS = 24
BLOCK_S = 0.25


def _spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _backend(name: str) -> object:
    if name == "garbage":
        return GarbageBackend()
    if name == "hang":
        return HangingBackend()
    return load_backend(str(ROOT / "models" / f"tiny-add-{name}"),
                        BackendOptions(capabilities=("math",), max_batch=16))


async def _run_network(tmp_path: Path) -> tuple[dict[str, float], str]:
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", *VALIDATORS, *GRADED, *BROKEN),
                           hyperparams=HYPER)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in (*VALIDATORS, *GRADED, *BROKEN):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    for name, stake in VALIDATORS.items():
        drv.send(name, "stake", named_key(f"{name}-hot").address, stake)
    ledger = EmbeddedLedger(drv.chain)
    async with AsyncExitStack() as stack:
        for name in (*GRADED, *BROKEN):
            server = MinerServer(named_key(f"{name}-hot"), ServerConfig())
            add_model_routes(server, _backend(name))  # type: ignore[arg-type]
            await stack.enter_async_context(server)
            drv.send(f"{name}-hot", "serve", 1, "127.0.0.1", server.port, 1)
        drv.run_to(drv.chain.subnet(1).next_epoch_block)  # permits for the validators
        validators = []
        for name in VALIDATORS:
            key = named_key(f"{name}-hot")
            client = await stack.enter_async_context(Client(key))
            config = ValidatorConfig(
                netuid=1, secret=derive_secret(key), state_path=tmp_path / f"{name}.state",
                sample_size=6, weights_interval=3, alpha=0.1,
                timeouts=Timeouts(connect=1.0, first_byte=1.0, total=1.0),
                selection=SelectionConfig(challenges_per_miner=12))
            validators.append(Validator(key, ledger, client, config))
        stop = asyncio.Event()

        async def produce() -> None:
            while not stop.is_set():
                await asyncio.sleep(BLOCK_S)
                drv.now_ms += 1000
                await ledger.produce_block(drv.now_ms)

        producer = asyncio.ensure_future(produce())
        try:
            await asyncio.gather(*(v.run(stop, max_steps=STEPS) for v in validators))
            tempo = HYPER.tempo
            target = (await ledger.block_height()) + 2 * tempo
            await ledger.wait_for_block(target, 60.0)  # two more epochs on the last weights
        finally:
            stop.set()
            await producer
            for v in validators:
                await v.aclose()
        metagraph = await ledger.metagraph(1)
    drv.chain.close()
    names = {named_key(f"{n}-hot").address: n for n in (*GRADED, *BROKEN)}
    incentive = {names[h]: float(i) for h, i in zip(metagraph.hotkeys, metagraph.incentive,
                                                    strict=True) if h in names}
    rows = [f"{'miner':8} {'incentive':>9}"] + [f"{n:8} {incentive[n]:9.4f}"
                                                for n in (*GRADED, *BROKEN)]
    return incentive, "\n".join(rows)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_incentive_follows_model_quality(tmp_path: Path) -> None:
    """Incentive order of graded miners matches quality; broken miners get < 2 % together."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    incentive, table = await _run_network(tmp_path)
    print("\nfinal incentive\n" + table)
    graded = [incentive[n] for n in GRADED]
    assert _spearman(graded, [10.0, 60.0, 90.0, 99.0]) >= 0.9, table
    assert incentive["garbage"] + incentive["hang"] < 0.02, table
