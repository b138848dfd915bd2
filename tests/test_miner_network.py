"""Miners on a real ledger: who may call (from the metagraph), and forged receipts score 0."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web

from miners.backends.deterministic import EchoMathBackend, solve
from miners.model_routes import add_model_routes
from miners.policy import MetagraphPolicy
from miners.server import MinerServer, ServerConfig
from miners.service import MinerConfig, run_miner, server_config
from protocol import envelope
from protocol.client import Client, Target, Timeouts
from protocol.errors import ConfigError, ReceiptError, RemoteError
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.testing import ChainDriver, named_key
from protocol.messages import GenerateRequest, GenerateResponse
from tests.conftest import serve_raw
from validators.service import Validator, ValidatorConfig, derive_secret

HYPER = SubnetHyperparams(tempo=4, weights_rate_limit=0, immunity_period=0, min_burn=T,
                          activity_cutoff=1000, max_allowed_validators=1)
PROMPT = GenerateRequest(prompt="12+34=", max_tokens=4)



@pytest.fixture
def driver(tmp_path: Path) -> ChainDriver:
    """Subnet 1 with a staked validator v1 (permit after one epoch), app (small stake), miner m."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", "v1", "app", "m", "forger"),
                           hyperparams=HYPER)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v1", "app", "m", "forger"):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 100 * T)
    drv.send("app", "stake", named_key("app-hot").address, 2 * T)
    drv.run_to(drv.chain.subnet(1).next_epoch_block)
    return drv


async def _forging_handler(request: web.Request) -> web.Response:
    """Answer correctly, with a receipt over the right digests signed by the wrong key."""
    body = await request.read()
    route = request.path
    header, _ = envelope.parse_request_headers(route, request.headers)
    digest = envelope.sha256(header.canonical(envelope.sha256(body)))
    if route.endswith("/info"):
        answer = EchoMathBackend().info().encode()
    else:
        prompt = GenerateRequest.decode(body).prompt or ""
        answer = GenerateResponse(text=solve(prompt), prompt_tokens=len(prompt),
                                  completion_tokens=2, finish_reason="stop",
                                  model="echo-math").encode()
    receipt = envelope.Receipt.issue(named_key("someone-else"), digest, 200,
                                     envelope.sha256(answer), int(time.time() * 1000))
    headers = {**receipt.headers(), "Content-Type": envelope.MSGPACK_TYPE,
               envelope.H_MINER: named_key("forger-hot").address}
    return web.Response(body=answer, headers=headers)


async def _ask(stack: AsyncExitStack, caller: str, target: Target) -> object:
    client = await stack.enter_async_context(Client(named_key(caller)))
    return await client.query(target, "generate", PROMPT, GenerateResponse)


async def test_metagraph_policy_admits_by_registration_permit_and_stake(
        driver: ChainDriver, stack: AsyncExitStack) -> None:
    """Unregistered callers and low-stake non-validators get 403; validators and stakers pass."""
    policy = MetagraphPolicy(min_stake=5 * T)
    policy.update_from(driver.chain.metagraph(1))
    server = MinerServer(named_key("m-hot"), ServerConfig(), policy=policy)
    add_model_routes(server, EchoMathBackend())
    await stack.enter_async_context(server)
    target = Target(server.address, server.url)

    stranger = await _ask(stack, "nobody-hot", target)
    assert isinstance(stranger.error, RemoteError)  # type: ignore[attr-defined]
    assert (stranger.error.status, stranger.error.code) == (403, "unregistered")  # type: ignore[attr-defined]
    app = await _ask(stack, "app-hot", target)
    assert (app.error.status, app.error.code) == (403, "low_stake")  # type: ignore[attr-defined]
    validator = await _ask(stack, "v1-hot", target)
    assert validator.ok  # type: ignore[attr-defined]
    assert validator.response.text == "46"  # type: ignore[attr-defined]

    driver.send("app", "stake", named_key("app-hot").address, 10 * T)
    driver.block()
    policy.update_from(driver.chain.metagraph(1))
    assert (await _ask(stack, "app-hot", target)).ok  # type: ignore[attr-defined]


async def test_correct_answer_with_forged_receipt_scores_zero(
        tmp_path: Path, driver: ChainDriver, stack: AsyncExitStack) -> None:
    """A miner answering correctly but signing with another key than its hotkey earns 0."""
    honest = MinerServer(named_key("m-hot"), ServerConfig())
    add_model_routes(honest, EchoMathBackend())
    await stack.enter_async_context(honest)
    # The forger (a hostile peer, not our server) answers every request addressed to its
    # registered hotkey correctly, but its receipts are signed by another key.
    forger_url = await stack.enter_async_context(serve_raw(_forging_handler))
    forger_port = int(forger_url.rsplit(":", 1)[1])
    driver.send("m-hot", "serve", 1, "127.0.0.1", honest.port, 1)
    driver.send("forger-hot", "serve", 1, "127.0.0.1", forger_port, 1)
    driver.block()
    ledger = EmbeddedLedger(driver.chain)
    client = await stack.enter_async_context(Client(named_key("v1-hot")))

    direct = await client.query(Target(named_key("forger-hot").address, forger_url),
                                "generate", PROMPT, GenerateResponse)
    assert isinstance(direct.error, ReceiptError)

    key = named_key("v1-hot")
    validator = Validator(key, ledger, client, ValidatorConfig(
        netuid=1, secret=derive_secret(key), state_path=tmp_path / "v.state", sample_size=4,
        timeouts=Timeouts(connect=1.0, first_byte=2.0, total=2.0)))
    for _ in range(3):
        await validator.step()
    await validator.aclose()
    scores = {i.hotkey: s for i, s in validator.state.scores.items()}
    assert scores[named_key("forger-hot").address] == 0.0
    assert scores[named_key("m-hot").address] > 0.2


async def test_the_miner_rate_limit_is_the_operators(stack: AsyncExitStack) -> None:
    """``--rate-limit`` reaches the server: a caller gets its bursts of 2N, then 429."""
    config = server_config(MinerConfig(netuid=1, port=0, rate_limit=1.5))
    assert (config.rate_limit.rate, config.rate_limit.burst) == (1.5, 3.0)
    server = MinerServer(named_key("m-hot"), config)
    add_model_routes(server, EchoMathBackend())
    await stack.enter_async_context(server)
    target = Target(server.address, server.url)
    client = await stack.enter_async_context(Client(named_key("v1-hot")))
    results = [await client.query(target, "generate", PROMPT, GenerateResponse)
               for _ in range(4)]
    assert [r.ok for r in results] == [True, True, True, False]
    assert isinstance(results[3].error, RemoteError)
    assert results[3].error.status == 429


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_wildcard_bind_needs_an_external_host(host: str) -> None:
    """Publishing 0.0.0.0 on the ledger would leave every validator dialling itself."""
    with pytest.raises(ConfigError, match="--external-host"):
        MinerConfig(netuid=1, host=host)
    config = MinerConfig(netuid=1, host=host, external_host="miner.example")
    assert config.public_host == "miner.example"
    assert MinerConfig(netuid=1, host="10.0.0.5").public_host == "10.0.0.5"


def test_the_command_line_refuses_a_wildcard_bind_before_loading_anything(
        capsys: pytest.CaptureFixture[str]) -> None:
    from protocol.cli.main import main  # noqa: PLC0415

    code = main(["miner", "run", "--netuid", "1", "--model", "echo-math", "--host", "0.0.0.0",
                 "--chain", "/nonexistent/chain.sqlite"])
    assert code != 0
    assert "add --external-host" in capsys.readouterr().err


async def test_stop_ends_a_start_up_stalled_on_the_chain(driver: ChainDriver) -> None:
    """No blocks are produced, so publishing the endpoint would wait a minute: a stop (SIGTERM in
    'ensemble miner run') ends it at once."""
    stop = asyncio.Event()
    backend = EchoMathBackend()
    config = MinerConfig(netuid=1, port=0)
    run = asyncio.create_task(run_miner(named_key("m-hot"), None, EmbeddedLedger(driver.chain),
                                        backend, config, stop))
    await asyncio.sleep(0.3)
    assert not run.done()  # waiting for the publication to be included
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(run, 5.0)
    assert time.monotonic() - started < 2.0
