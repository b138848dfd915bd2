"""RemoteLedger (protocol/ledger/remote.py), open_ledger (connect.py) and the answer codecs
(api_wire.py, metagraph_wire.py): errors come back as the Ledger interface's own, and every
codec round-trips exactly and refuses garbage with DecodeError only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errorbody import ErrorBody
from protocol.errors import AddressError, ConfigError
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger import api_wire, events
from protocol.ledger.builders import TxBuilder
from protocol.ledger.connect import ChainInUseError, dev_authority_key, open_ledger
from protocol.ledger.errors import (
    ChainClosedError,
    DecodeError,
    NoSuchItemError,
    Reason,
    TxRejected,
    WaitTimeout,
)
from protocol.ledger.interface import EmbeddedLedger, submit_and_wait
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.metagraph_wire import decode_metagraph, encode_metagraph
from protocol.ledger.node import ChainNode
from protocol.ledger.remote import NodeError, RemoteLedger
from protocol.ledger.state import Endpoint
from protocol.ledger.testing import named_key
from tests.conftest import closed_port
from tests.test_chain_node import FAST_BLOCK, OWNER, WAIT, running_node, subnet_scenario


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[ChainNode]:
    """A running dev node with 50 ms blocks."""
    async with running_node(tmp_path / "chain.db") as n:
        yield n


@pytest.fixture
async def remote(node: ChainNode) -> AsyncIterator[RemoteLedger]:
    """A RemoteLedger connected to the node."""
    async with RemoteLedger(node.url) as ledger:
        yield ledger


# --- the client against a real node ---------------------------------------------------------


async def test_remote_errors_match_the_embedded_ledger(remote: RemoteLedger) -> None:
    """Unknown items, bad addresses and waits raise the Ledger interface's errors."""
    with pytest.raises(NoSuchItemError):
        await remote.subnet(7)
    with pytest.raises(NoSuchItemError):
        await remote.subnet(70_000)
    with pytest.raises(NoSuchItemError):
        await remote.neuron(7, 0)
    with pytest.raises(NoSuchItemError):
        await remote.neuron(7, OWNER.address)
    with pytest.raises(NoSuchItemError):
        await remote.metagraph(7)
    with pytest.raises(AddressError):
        await remote.account("ens1nope")
    with pytest.raises(AddressError):
        await remote.neuron(1, "ens1nope")
    with pytest.raises(WaitTimeout):
        await remote.wait_for_tx(b"\x00" * 32, timeout=0.1)
    height = await remote.block_height()
    with pytest.raises(WaitTimeout):
        await remote.wait_for_block(height + 10_000, timeout=0.1)
    assert await remote.wait_for_block(height + 1, timeout=WAIT) >= height + 1
    assert await remote.subnets() == ()
    assert (await remote.account(OWNER.address)).balance == 0


async def test_remote_submit_reports_rejections_and_outcomes(remote: RemoteLedger) -> None:
    """A block-stage rejection is an outcome; a submit-stage one raises TxRejected."""
    builder = TxBuilder(OWNER, await remote.chain_id())
    with pytest.raises(TxRejected) as info:  # a key the chain knows nothing of
        await remote.submit(builder.transfer(named_key("bob").address, 5 * T, nonce=0))
    assert info.value.reason is Reason.UNKNOWN_SIGNER
    paid = await submit_and_wait(remote, builder.faucet(OWNER.address, 7 * T, nonce=0), WAIT)
    assert paid.applied
    assert paid.height is not None
    assert [e.KIND for e in paid.events] == ["faucet_paid"]
    outcome = await submit_and_wait(remote, builder.transfer(
        named_key("bob").address, 8 * T, nonce=1), WAIT)
    assert (outcome.applied, outcome.reason) == (False, Reason.INSUFFICIENT_BALANCE)
    assert outcome.message
    with pytest.raises(TxRejected) as info:
        await remote.submit(builder.transfer(named_key("bob").address, 5 * T, nonce=9))
    assert info.value.reason is Reason.BAD_SEQUENCE
    account = await remote.account(OWNER.address)
    assert (account.balance, account.nonce, account.next_nonce) == (7 * T, 1, 1)


async def test_unreachable_node_is_a_node_error() -> None:
    """Nothing listening: NodeError('unreachable'), not a bare aiohttp exception."""
    async with RemoteLedger(f"http://127.0.0.1:{closed_port()}") as ledger:
        with pytest.raises(NodeError) as info:
            await ledger.block_height()
    assert (info.value.code, info.value.status) == ("unreachable", None)


@contextlib.asynccontextmanager
async def fake_node(status: int, body: bytes) -> AsyncIterator[str]:
    """A server answering every GET with ``status`` and ``body`` (a proxy, a broken node)."""
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("status", "body", "error", "code"), [
    (502, b"<html>bad gateway</html>", NodeError, "http_502"),
    (200, b"\xc1garbage", DecodeError, None),
    (200, codec.pack({"chain_id": b"x"}), DecodeError, None),
    (503, ErrorBody("chain_stopped", "stopped").encode(), ChainClosedError, None),
    (429, ErrorBody("rate_limited", "slow down", 2.0).encode(), NodeError, "rate_limited"),
])
async def test_answers_outside_the_contract(status: int, body: bytes, error: type[Exception],
                                            code: str | None) -> None:
    """Proxies, garbage and unknown codes map to NodeError or DecodeError."""
    async with fake_node(status, body) as url, RemoteLedger(url) as ledger:
        with pytest.raises(error) as info:
            await ledger.block_height()
    if code is not None:
        assert isinstance(info.value, NodeError)
        assert info.value.code == code


async def test_remote_url_is_validated() -> None:
    """Only http(s) URLs name a node; a closed client refuses calls."""
    with pytest.raises(ConfigError):
        RemoteLedger("ftp://example.org")
    ledger = RemoteLedger("http://127.0.0.1:1")
    await ledger.aclose()
    await ledger.aclose()
    with pytest.raises(Exception, match="closed"):
        await ledger.block_height()


# --- open_ledger ------------------------------------------------------------------------------


async def test_open_ledger_url_and_path(node: ChainNode, tmp_path: Path) -> None:
    """A URL gives a RemoteLedger; a path gives an EmbeddedLedger that produces blocks."""
    async with open_ledger(node.url) as ledger:
        assert isinstance(ledger, RemoteLedger)
        assert await ledger.chain_id() == node.head.chain_id
    path = tmp_path / "own.db"
    async with open_ledger(str(path), dev=True, block_time=FAST_BLOCK) as ledger:
        assert isinstance(ledger, EmbeddedLedger)
        assert ledger.chain.config.node_key.address == dev_authority_key().address
        assert await ledger.wait_for_block(2, WAIT) >= 2
        with pytest.raises(ChainInUseError):
            async with open_ledger(str(path)):
                pass
    # an existing file opens as what its genesis says, without --dev
    async with open_ledger(str(path), block_time=FAST_BLOCK) as ledger:
        assert await ledger.block_height() >= 2


async def test_open_ledger_refuses_what_cannot_run(tmp_path: Path) -> None:
    """No spec, a missing file without dev, a key that is not the chain's authority."""
    with pytest.raises(ConfigError, match="no chain given"):
        async with open_ledger(""):
            pass
    with pytest.raises(ConfigError, match="--dev"):
        async with open_ledger(str(tmp_path / "missing.db")):
            pass
    assert not (tmp_path / "missing.db").exists()
    path = str(tmp_path / "dev.db")
    async with open_ledger(path, dev=True, block_time=FAST_BLOCK):
        pass
    with pytest.raises(ConfigError, match="not a block authority"):
        async with open_ledger(path, node_key=named_key("stranger")):
            pass


# --- codecs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real views from a finished subnet scenario, to round-trip through the codecs."""
    path = tmp_path_factory.mktemp("codec") / "chain.db"

    async def collect() -> dict[str, Any]:
        async with open_ledger(str(path), dev=True, block_time=FAST_BLOCK) as ledger:
            mg = await subnet_scenario(ledger)
            builder = TxBuilder(OWNER, await ledger.chain_id())
            owner = await ledger.account(OWNER.address)
            rejected = await submit_and_wait(ledger, builder.transfer(
                named_key("x").address, owner.balance + 1, nonce=owner.next_nonce), WAIT)
            return {"metagraph": mg, "subnet": await ledger.subnet(1),
                    "neurons": [await ledger.neuron(1, uid) for uid in range(mg.n)],
                    "account": await ledger.account(OWNER.address), "rejected": rejected}

    return asyncio.run(collect())


def _same_metagraph(a: Metagraph, b: Metagraph) -> None:
    for name in Metagraph.__dataclass_fields__:
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, np.ndarray):
            assert left.dtype == right.dtype, name
            assert np.array_equal(left, right), name
            assert not right.flags.writeable
        else:
            assert left == right, name


def test_view_codecs_round_trip(scenario_values: dict[str, Any]) -> None:
    """Account, subnet, neuron, outcome and metagraph answers decode to equal values."""
    def trip(value: Any, to_wire: Callable[[Any], Any], from_wire: Callable[[Any], Any]) -> Any:
        return api_wire.unpack_answer(api_wire.pack_answer(to_wire(value)), from_wire)

    account = scenario_values["account"]
    assert trip(account, api_wire.account_to_wire, api_wire.account_from_wire) == account
    subnet = scenario_values["subnet"]
    assert trip(subnet, api_wire.subnet_to_wire, api_wire.subnet_from_wire) == subnet
    for neuron in scenario_values["neurons"]:
        assert trip(neuron, api_wire.neuron_to_wire, api_wire.neuron_from_wire) == neuron
    rejected = scenario_values["rejected"]
    assert trip(rejected, api_wire.outcome_to_wire, api_wire.outcome_from_wire) == rejected
    mg = scenario_values["metagraph"]
    _same_metagraph(decode_metagraph(encode_metagraph(mg)), mg)


def test_every_event_kind_has_a_codec() -> None:
    """EVENT_TYPES covers every Event subclass, and each round-trips."""
    exported = {getattr(events, name) for name in events.__all__ if name != "Event"}
    assert set(api_wire.EVENT_TYPES.values()) == exported
    samples = {str: "ens1x", int: 3, tuple[str, ...]: ("a", "b")}
    for cls in api_wire.EVENT_TYPES.values():
        hints = typing.get_type_hints(cls)
        event = cls(**{f.name: samples[hints[f.name]]
                       for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        assert api_wire.event_from_wire(
            codec.unpack(codec.pack(api_wire.event_to_wire(event)))) == event


_ADDRESSES = [named_key(f"k{i}").address for i in range(4)]
_ratio = st.floats(0.0, 1.0, allow_nan=False)
_endpoint = st.one_of(st.none(), st.builds(Endpoint, st.text("abc.-1", min_size=1, max_size=20),
                                           st.integers(1, 65535), st.integers(0, 65535),
                                           st.integers(0, 50)))


@st.composite
def metagraphs(draw: st.DrawFn) -> Metagraph:
    """Arbitrary valid metagraphs (n up to 12)."""
    n = draw(st.integers(0, 12))
    block = draw(st.integers(50, 2**40))

    def column(values: st.SearchStrategy[Any], dtype: Any) -> Any:
        array = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)
        array.setflags(write=False)
        return array

    uids = np.arange(n, dtype=np.int64)
    uids.setflags(write=False)
    ratios = {name: column(_ratio, np.float64)
              for name in ("incentive", "dividends", "consensus", "trust", "validator_trust")}
    return Metagraph(
        netuid=draw(st.integers(0, 65535)), block=block, uids=uids,
        hotkeys=tuple(draw(st.lists(st.sampled_from(_ADDRESSES), min_size=n, max_size=n))),
        coldkeys=tuple(draw(st.lists(st.sampled_from(_ADDRESSES), min_size=n, max_size=n))),
        stake=column(st.integers(0, 2**63 - 1), np.int64),
        validator_permit=column(st.booleans(), np.bool_),
        emission=column(st.integers(0, 2**50), np.int64),
        last_update=column(st.integers(0, 50), np.int64),
        active=column(st.booleans(), np.bool_),
        registered_at=column(st.integers(0, 50), np.int64),
        endpoints=tuple(draw(st.lists(_endpoint, min_size=n, max_size=n))), **ratios)


@settings(max_examples=150, deadline=None, database=None)
@given(metagraphs())
def test_metagraph_codec_round_trips(mg: Metagraph) -> None:
    """decode(encode(m)) equals m, column by column, bit for bit, and is deterministic."""
    data = encode_metagraph(mg)
    again = decode_metagraph(data)
    _same_metagraph(again, mg)
    assert encode_metagraph(again) == data


@settings(max_examples=300, deadline=None, database=None)
@given(metagraphs(), st.data())
def test_metagraph_decoder_only_raises_decode_error(mg: Metagraph, data: st.DataObject) -> None:
    """Mutated or truncated encodings either decode or raise DecodeError, nothing else."""
    encoded = bytearray(encode_metagraph(mg))
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    else:
        encoded = encoded[:data.draw(st.integers(0, len(encoded)))]
    with contextlib.suppress(DecodeError):
        decode_metagraph(bytes(encoded))


_READERS = [api_wire.account_from_wire, api_wire.subnet_from_wire, api_wire.neuron_from_wire,
            api_wire.outcome_from_wire, api_wire.receipt_from_wire, api_wire.head_from_wire,
            api_wire.chain_from_wire, api_wire.subnets_from_wire, api_wire.event_from_wire]
_msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=8), st.binary(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["kind", "address", "balance", "tx_hash", "netuid", "n"]),
                                inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(_READERS), st.one_of(st.binary(max_size=200),
                                            _msgpack_values.map(codec.pack)))
def test_answer_decoders_only_raise_decode_error(reader: Callable[[Any], Any],
                                                 data: bytes) -> None:
    """Any bytes given to any answer reader decode or raise DecodeError, nothing else."""
    with contextlib.suppress(DecodeError):
        api_wire.unpack_answer(data, reader)


def test_outcome_decoder_checks_consistency() -> None:
    """An 'applied' outcome with a reason, or without a height, is refused."""
    good = {"tx_hash": b"\x01" * 32, "applied": True, "height": 3, "reason": None,
            "message": "", "events": []}
    assert api_wire.outcome_from_wire(good).height == 3
    for change in ({"reason": "malformed"}, {"height": None},
                   {"applied": False, "events": [{"kind": "faucet_paid", "dest": "x",
                                                  "amount": 1}]}):
        with pytest.raises(DecodeError):
            api_wire.outcome_from_wire({**good, **change})
