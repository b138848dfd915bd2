"""The router library against real miners on 127.0.0.1 and a real dev chain."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from miners.backends.deterministic import EchoMathBackend
from miners.backends.faulty import GarbageBackend
from protocol.envelope import Receipt
from protocol.errors import ConfigError
from protocol.messages import ChatMessage
from router.candidates import EligibilityConfig
from router.errors import (
    NoCandidatesError,
    RouterClosedError,
    RouterError,
    RouterInputError,
)
from router.router import Router
from tests.fault_backends import (
    ROUTER_KEY,
    RawMiner,
    never_answer,
    open_router,
    poll,
    start_fleet,
)

#: Seconds a bounded poll may take before the test calls it a hang.



async def test_complete_answers_with_provenance_and_valid_receipts(
        tmp_path: Path, stack: AsyncExitStack) -> None:
    """An answer names its miner (uid, hotkey) and carries its valid signed receipt."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in "abc"})
    router = await open_router(stack, fleet, seed=7)
    answer = await router.complete("12+34=", max_tokens=8)
    assert (answer.text, answer.finish_reason, answer.model) == ("46", "stop", "echo-math")
    assert answer.usage.completion_tokens == 3  # two digits and the end-of-sequence "token"
    prov = answer.provenance
    assert prov.strategy == "best"
    assert [a.outcome for a in prov.attempts] == ["ok"]
    (mine,) = prov.answers
    assert (mine.uid, mine.hotkey) == prov.primary
    assert fleet.name_of(mine.hotkey) in "abc"
    receipt = Receipt.from_bytes(mine.receipt)
    assert receipt.is_valid()
    assert receipt.miner_address == mine.hotkey
    assert prov.verify()
    assert prov.to_dict()["answers"][0]["hotkey"] == mine.hotkey


async def test_stream_yields_pieces_then_the_completion(tmp_path: Path,
                                                        stack: AsyncExitStack) -> None:
    """A chat stream yields the answer piece by piece; ``completion`` is set at the end."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in "ab"})
    router = await open_router(stack, fleet, seed=7)
    stream = router.stream([{"role": "user", "content": "40+2="},
                            ChatMessage(role="user", content="12+34=")], max_tokens=8)
    pieces = [piece async for piece in stream]
    assert pieces == ["4", "6"]
    assert stream.completion is not None
    assert stream.completion.text == "46"
    assert stream.completion.provenance.verify()


async def test_ensemble_votes_records_dissent_and_stops_early(tmp_path: Path,
                                                              stack: AsyncExitStack) -> None:
    """An ensemble returns the weighted-majority answer; a dissenter's wrong rate rises."""
    miners = {"a": EchoMathBackend(), "b": EchoMathBackend(), "c": EchoMathBackend(),
              "garbage": GarbageBackend()}
    fleet = await start_fleet(tmp_path, stack, miners)
    router = await open_router(stack, fleet, seed=7)
    garbage = fleet.hotkey("garbage")
    for i in range(6):
        answer = await router.complete(f"{i}+40=", strategy="ensemble", k=4, max_tokens=8)
        assert answer.text == str(i + 40)
        vote = answer.provenance.vote
        assert vote is not None
        assert (vote.method, vote.winner, vote.agreed) == ("majority", str(i + 40), True)
        voters = {a.hotkey: a.agreed for a in answer.provenance.answers}
        assert all(agreed for h, agreed in voters.items() if h != garbage)
        assert voters.get(garbage, False) is False
        assert answer.provenance.verify()
    assert router.health.snapshot(garbage).wrong_rate > 0.0
    early = await router.complete("1+1=", strategy="ensemble", k=3, max_tokens=8)
    assert early.provenance.vote is not None
    assert len(early.provenance.vote.ballots) >= 1


async def test_capabilities_and_models_filter_candidates(tmp_path: Path,
                                                          stack: AsyncExitStack) -> None:
    """Only miners whose ``info`` lists the capabilities (and model) a request needs serve it."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in "ab"})
    router = await open_router(stack, fleet, seed=7)
    assert (await router.complete("2+2=", capabilities=["math"])).text == "4"
    assert (await router.complete("2+2=", model="echo-math")).text == "4"
    with pytest.raises(NoCandidatesError, match="capabilities") as info:
        await router.complete("2+2=", capabilities=["chat"])
    assert info.value.status == 503
    with pytest.raises(NoCandidatesError):
        await router.complete("2+2=", model="gpt-17")


async def test_eligibility_follows_consensus_as_blocks_arrive(tmp_path: Path,
                                                              stack: AsyncExitStack) -> None:
    """A miner without incentive is not routed to until an epoch gives it some; the router
    learns it from new blocks on its own. The validator (no endpoint) is never a candidate."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in ("a", "b", "new")},
                              weights={"a": 1000, "b": 1000, "new": 0})
    router = await open_router(stack, fleet, seed=7)
    pool = set(router.snapshot.pool.hotkeys)
    assert pool == {fleet.hotkey("a"), fleet.hotkey("b")}
    drv = fleet.driver
    uids = [drv.chain.neuron(1, fleet.hotkey(n)).uid for n in ("a", "b", "new")]
    drv.send("v1-hot", "set_weights", 1, uids, [1000, 1000, 1000])
    target = drv.chain.subnet(1).next_epoch_block
    while drv.chain.height < target:
        await fleet.block()
    await poll(lambda: fleet.hotkey("new") in router.snapshot.pool.index,
               "the router's pool includes the miner that gained incentive")
    assert router.snapshot.block >= target


async def test_info_is_asked_once_per_registration(tmp_path: Path,
                                                   stack: AsyncExitStack) -> None:
    """Metagraph syncs do not ask a known miner for ``info`` again."""
    fleet = await start_fleet(tmp_path, stack, {"raw": never_answer, "a": EchoMathBackend()})
    router = await open_router(stack, fleet, seed=7)
    raw = fleet.servers["raw"]
    assert isinstance(raw, RawMiner)
    for _ in range(3):
        await router.refresh()
        await fleet.block()
    assert raw.info_calls == 1


async def test_typed_errors(tmp_path: Path, stack: AsyncExitStack) -> None:
    """Bad arguments, an unstarted router and an empty pool raise typed router errors."""
    fleet = await start_fleet(tmp_path, stack, {"a": EchoMathBackend()})
    idle = Router(ledger=fleet.ledger, keypair=ROUTER_KEY)
    with pytest.raises(RouterClosedError):
        await idle.complete("1+1=")
    router = await open_router(stack, fleet, seed=7)
    with pytest.raises(RouterInputError) as bad:
        await router.complete("1+1=", temperature=5.0)
    assert (bad.value.status, bad.value.param) == (400, "temperature")
    with pytest.raises(RouterInputError, match="strategy"):
        await router.complete("1+1=", strategy="fastest")
    with pytest.raises(RouterInputError):
        await router.complete([])
    strict = await open_router(stack, fleet, seed=7,
                               eligibility=EligibilityConfig(min_incentive=1.0))
    with pytest.raises(NoCandidatesError, match="no eligible miner") as none:
        await strict.complete("1+1=")
    assert isinstance(none.value, RouterError)
    assert (none.value.status, none.value.should_retry) == (503, False)


async def test_cold_subnet_is_routed_until_consensus_speaks(tmp_path: Path,
                                                            stack: AsyncExitStack) -> None:
    """Before any epoch gave incentive, every serving miner is eligible (cold start)."""
    fleet = await start_fleet(tmp_path, stack, {n: EchoMathBackend() for n in "ab"}, weights={})
    router = await open_router(stack, fleet, seed=7)
    assert len(router.snapshot.pool) == 2
    assert (await router.complete("3+4=")).text == "7"
    cold_off = await open_router(stack, fleet, seed=7, cold_start=False)
    assert len(cold_off.snapshot.pool) == 0


def test_constructor_checks_arguments_without_io() -> None:
    """The constructor validates its arguments and touches neither files nor network."""
    Router(chain="/nonexistent/chain.db", wallet="nobody")  # opened only by start()
    with pytest.raises(ConfigError):
        Router(wallet="nobody")
    with pytest.raises(ConfigError):
        Router(chain="x.db", wallet="a", keypair=ROUTER_KEY)
