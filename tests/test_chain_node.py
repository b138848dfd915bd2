"""The chain node's HTTP API (protocol/ledger/node.py) on 127.0.0.1, with RemoteLedger and raw
HTTP: the embedded scenario passes over the wire; bad transactions and bad requests get typed
errors with exact statuses, never a 500."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errorbody import ErrorBody
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.api_wire import head_from_wire, unpack_answer
from protocol.ledger.builders import TxBuilder
from protocol.ledger.connect import ChainInUseError, open_ledger, run_embedded
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.interface import Ledger, submit_and_wait
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.node import ChainNode, NodeConfig
from protocol.ledger.remote import RemoteLedger
from protocol.ledger.testing import named_key
from protocol.ledger.tx import Tx

#: Dev block time of these tests: fast enough that a scenario of a few epochs takes seconds.
FAST_BLOCK = 0.05
#: Seconds any single wait on the chain may take before a test calls it a hang.
WAIT = 20.0
OWNER, VALIDATOR, MINER = named_key("owner"), named_key("validator-hot"), named_key("miner-hot")


@asynccontextmanager
async def running_node(path: Path, *, block_time: float = FAST_BLOCK,
                       **config: Any) -> AsyncIterator[ChainNode]:
    """A dev chain node on 127.0.0.1, any free port, over the chain file ``path``."""
    async with ChainNode(path, NodeConfig(port=0, dev=True, block_time=block_time,
                                          **config)) as node:
        yield node


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


async def subnet_scenario(ledger: Ledger) -> Metagraph:
    """Faucet, subnet create, hyperparameters, register, stake, serve, set weights, epochs.

    Returns the metagraph after the epoch that follows the weights.
    """
    chain_id = await ledger.chain_id()
    owner = TxBuilder(OWNER, chain_id)
    setup = [
        owner.faucet(OWNER.address, 1000 * T, nonce=0),
        owner.create_subnet(max_lock_cost=100 * T, nonce=1),
        owner.set_hyperparams(1, {"tempo": 3, "weights_rate_limit": 0}, nonce=2),
        owner.register(1, VALIDATOR, max_burn=T, nonce=3),
        owner.register(1, MINER, max_burn=T, nonce=4),
        owner.stake(VALIDATOR.address, 500 * T, nonce=5),
    ]
    receipts = [await ledger.submit(tx) for tx in setup]
    outcomes = [await ledger.wait_for_tx(r.tx_hash, WAIT) for r in receipts]
    assert [o.applied for o in outcomes] == [True] * len(setup), outcomes
    # the first epoch hands out validator permits
    await ledger.wait_for_block((await ledger.subnet(1)).next_epoch_block, WAIT)
    served = await submit_and_wait(
        ledger, TxBuilder(MINER, chain_id).serve(1, "127.0.0.1", 9000, 1, nonce=0), WAIT)
    weights = await submit_and_wait(
        ledger, TxBuilder(VALIDATOR, chain_id).set_weights(1, [1], [65535], nonce=0), WAIT)
    assert (served.applied, weights.applied) == (True, True), (served, weights)
    await ledger.wait_for_block((await ledger.subnet(1)).next_epoch_block, WAIT)
    return await ledger.metagraph(1)


def check_scenario_metagraph(mg: Metagraph) -> None:
    """What the scenario must produce: the weighted miner earns all the incentive."""
    assert mg.hotkeys == (VALIDATOR.address, MINER.address)
    assert mg.coldkeys == (OWNER.address, OWNER.address)
    assert mg.incentive.tolist() == [0.0, 1.0]
    assert mg.dividends.tolist() == [1.0, 0.0]
    assert mg.validator_permit.tolist() == [True, False]
    assert mg.endpoints[0] is None
    endpoint = mg.endpoints[1]
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.protocol) == ("127.0.0.1", 9000, 1)
    assert int(mg.stake[0]) >= 500 * T


async def test_scenario_over_http_matches_embedded(tmp_path: Path) -> None:
    """The same subnet scenario gives the same metagraph embedded and through node + HTTP."""
    async with run_embedded(tmp_path / "embedded.db", dev=True, block_time=FAST_BLOCK) as run:
        embedded = await subnet_scenario(run.ledger)
    async with running_node(tmp_path / "node.db") as node, RemoteLedger(node.url) as remote:
        assert isinstance(remote, Ledger)
        over_http = await subnet_scenario(remote)
        assert (await remote.subnet(1)).neurons == 2
        neuron = await remote.neuron(1, MINER.address)
        assert (neuron.uid, neuron.incentive, neuron.coldkey) == (1, 1.0, OWNER.address)
        assert await remote.neuron(1, 1) == neuron
        validator = await remote.neuron(1, 0)
        assert validator.weights == ((1, 65535),)
    check_scenario_metagraph(embedded)
    check_scenario_metagraph(over_http)
    for column in ("incentive", "dividends", "trust", "consensus", "validator_trust",
                   "validator_permit", "uids"):
        assert np.array_equal(getattr(embedded, column), getattr(over_http, column)), column


# --- transactions the node must refuse ------------------------------------------------------


async def post_tx(http: aiohttp.ClientSession, node: ChainNode,
                  body: bytes) -> tuple[int, ErrorBody | bytes]:
    """POST raw bytes to /v1/tx; return the status and the decoded error body (or raw body)."""
    async with asyncio.timeout(WAIT), http.post(node.url + "/v1/tx", data=body) as resp:
        data = await resp.read()
        assert resp.headers["Content-Type"] == "application/msgpack"
        return resp.status, ErrorBody.decode(data) if resp.status >= 400 else data


def forged(tx: Tx) -> Tx:
    """``tx`` with one bit of its signature flipped."""
    signature = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    return Tx(tx.chain_id, tx.signer, tx.nonce, tx.call, signature, tx.cosignature)


async def test_forged_replayed_and_foreign_transactions_are_refused(
        node: ChainNode, remote: RemoteLedger, http: aiohttp.ClientSession) -> None:
    """Bad signature → 422, replay → 409, other chain → 422, each with its reason code."""
    alice = TxBuilder(named_key("alice"), await remote.chain_id())
    tx = alice.faucet(named_key("alice").address, T, nonce=0)

    status, body = await post_tx(http, node, forged(tx).encode())
    assert (status, body.code) == (422, "bad_signature")  # type: ignore[union-attr]
    with pytest.raises(TxRejected) as info:
        await remote.submit(forged(tx))
    assert info.value.reason is Reason.BAD_SIGNATURE

    outcome = await submit_and_wait(remote, tx, WAIT)
    assert outcome.applied
    status, body = await post_tx(http, node, tx.encode())
    assert (status, body.code) == (409, "bad_sequence")  # type: ignore[union-attr]
    with pytest.raises(TxRejected) as info:
        await remote.submit(tx)
    assert info.value.reason is Reason.BAD_SEQUENCE

    other = TxBuilder(named_key("alice"), b"\x42" * 32).faucet(named_key("alice").address, T,
                                                               nonce=1)
    status, body = await post_tx(http, node, other.encode())
    assert (status, body.code) == (422, "bad_chain_id")  # type: ignore[union-attr]
    assert (await remote.account(named_key("alice").address)).balance == T


async def test_oversized_and_empty_bodies(node: ChainNode, http: aiohttp.ClientSession) -> None:
    """A body over 64 KiB is 413 too_large; an empty one is 400 malformed."""
    status, body = await post_tx(http, node, b"\x00" * (64 * 1024 + 1))
    assert (status, body.code) == (413, "too_large")  # type: ignore[union-attr]
    status, body = await post_tx(http, node, b"")
    assert (status, body.code) == (400, "malformed")  # type: ignore[union-attr]


def _post_blocking(port: int, body: bytes) -> tuple[int, bytes]:
    """POST /v1/tx with the standard library (from a worker thread, off the node's loop)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("POST", "/v1/tx", body=body,
                     headers={"Content-Type": "application/msgpack"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


_CODES_BY_STATUS = {400: {"malformed"}, 409: {"bad_sequence"},
                    422: {"bad_signature", "bad_chain_id"}}
_FUZZ = settings(max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


async def test_fuzzed_transactions_get_typed_errors(node: ChainNode) -> None:
    """Random bytes and single-byte mutations of a valid transaction: a typed 4xx, never 5xx."""
    valid = TxBuilder(named_key("fuzz"), node.head.chain_id).transfer(
        named_key("sink").address, T, nonce=3).encode()

    def check(body: bytes) -> None:
        status, data = _post_blocking(node.port, body)
        assert status in _CODES_BY_STATUS, (status, data)
        assert ErrorBody.decode(data).code in _CODES_BY_STATUS[status]

    @_FUZZ
    @given(st.binary(max_size=400))
    def random_bodies(body: bytes) -> None:
        check(body)

    @_FUZZ
    @given(st.integers(0, len(valid) - 1), st.integers(0, 255))
    def mutations(index: int, value: int) -> None:
        assume(valid[index] != value)
        check(valid[:index] + bytes([value]) + valid[index + 1:])

    await asyncio.to_thread(random_bodies)
    await asyncio.to_thread(mutations)


# --- bad requests ---------------------------------------------------------------------------

_HASH = "ab" * 32
BAD_REQUESTS = [
    ("GET", "/v1/subnet/abc", 400, "bad_param"),
    ("GET", "/v1/subnet/-1", 400, "bad_param"),
    ("GET", "/v1/subnet/65536", 400, "bad_param"),
    ("GET", "/v1/subnet/1.5", 400, "bad_param"),
    ("GET", "/v1/subnet/" + "9" * 30, 400, "bad_param"),
    ("GET", "/v1/subnet/7", 404, "not_found"),
    ("GET", "/v1/metagraph/7", 404, "not_found"),
    ("GET", "/v1/metagraph/x", 400, "bad_param"),
    ("GET", "/v1/neuron/7/0", 404, "not_found"),
    ("GET", "/v1/neuron/1/70000", 400, "bad_param"),
    ("GET", "/v1/neuron/1/ens1nope", 400, "bad_address"),
    ("GET", f"/v1/neuron/7/{OWNER.address}", 404, "not_found"),
    ("GET", "/v1/account/ens1nope", 400, "bad_address"),
    ("GET", "/v1/account/" + "a" * 3000, 400, "bad_address"),
    ("GET", "/v1/tx/zz", 400, "bad_param"),
    ("GET", "/v1/tx/" + "ab" * 33, 400, "bad_param"),
    ("GET", f"/v1/tx/{_HASH}?wait=abc", 400, "bad_param"),
    ("GET", f"/v1/tx/{_HASH}?wait=-1", 400, "bad_param"),
    ("GET", f"/v1/tx/{_HASH}?wait=nan", 400, "bad_param"),
    ("GET", f"/v1/tx/{_HASH}?wait=inf", 400, "bad_param"),
    ("GET", f"/v1/tx/{_HASH}", 404, "tx_not_found"),
    ("GET", f"/v1/tx/{_HASH}?wait=0.05", 404, "tx_not_found"),
    ("GET", "/v1/blocks/wait?after=x", 400, "bad_param"),
    ("GET", "/v1/blocks/wait?after=-1", 400, "bad_param"),
    ("GET", "/v1/blocks/wait?timeout=-5", 400, "bad_param"),
    ("GET", "/v1/nope", 404, "unknown_route"),
    ("GET", "/", 404, "unknown_route"),
    ("POST", "/v1/subnets", 405, "method_not_allowed"),
    ("DELETE", "/v1/tx", 405, "method_not_allowed"),
    ("PUT", "/v1/account/x", 405, "method_not_allowed"),
]


async def test_bad_requests_get_typed_errors(node: ChainNode,
                                             http: aiohttp.ClientSession) -> None:
    """Bad paths, parameters and methods: exact 4xx status and code in an error body."""
    for method, path, status, code in BAD_REQUESTS:
        async with asyncio.timeout(WAIT), http.request(method, node.url + path) as resp:
            data = await resp.read()
            assert (resp.status, ErrorBody.decode(data).code) == (status, code), path
            assert resp.headers["Content-Type"] == "application/msgpack"


async def test_long_poll_for_blocks_and_health(node: ChainNode,
                                               http: aiohttp.ClientSession) -> None:
    """blocks/wait returns once a later block is committed; /health and /metrics answer."""
    start = node.head.height
    async with asyncio.timeout(WAIT), http.get(
            f"{node.url}/v1/blocks/wait?after={start}&timeout=10") as resp:
        head = unpack_answer(await resp.read(), head_from_wire)
    assert resp.status == 200
    assert head.height > start
    assert head.chain_id == node.head.chain_id
    async with asyncio.timeout(WAIT), http.get(
            f"{node.url}/v1/blocks/wait?after={10**9}&timeout=0.05") as resp:
        assert unpack_answer(await resp.read(), head_from_wire).height < 10**9
    async with asyncio.timeout(WAIT), http.get(node.url + "/health") as resp:
        health = await resp.json()
    assert (resp.status, health["status"], health["chain_id"]) == (
        200, "ok", node.head.chain_id.hex())
    async with asyncio.timeout(WAIT), http.get(node.url + "/metrics") as resp:
        text = (await resp.read()).decode()
    assert "ensemble_chain_height " in text
    assert "ensemble_chain_block_production_seconds_count" in text


async def test_metrics_count_accepted_and_rejected(node: ChainNode,
                                                   remote: RemoteLedger) -> None:
    """Accepted and refused submissions are counted by reason."""
    builder = TxBuilder(named_key("m"), await remote.chain_id())
    await submit_and_wait(remote, builder.faucet(named_key("m").address, T, nonce=0), WAIT)
    with pytest.raises(TxRejected):
        await remote.submit(builder.faucet(named_key("m").address, T, nonce=0))
    registry = node.metrics.registry
    assert registry.get_sample_value("ensemble_chain_txs_accepted_total") == 1.0
    assert registry.get_sample_value("ensemble_chain_txs_included_total") == 1.0
    assert registry.get_sample_value("ensemble_chain_txs_rejected_total",
                                     {"stage": "submit", "reason": "bad_sequence"}) == 1.0


async def test_chain_file_has_one_owner(tmp_path: Path) -> None:
    """A second node or an embedded open of a served file is refused, naming the node's URL."""
    path = tmp_path / "chain.db"
    async with running_node(path) as node:
        with pytest.raises(ChainInUseError, match=f"--chain {node.url}"):
            async with running_node(path):
                pass
        with pytest.raises(ChainInUseError, match="in use by another process"):
            async with open_ledger(str(path), dev=True):
                pass
        height = node.head.height
    # released on close: the file opens again, at least where the node stopped
    async with open_ledger(str(path), block_time=FAST_BLOCK) as ledger:
        assert await ledger.block_height() >= height


async def test_close_finishes_the_block_in_production(tmp_path: Path) -> None:
    """Stopping right after a submit leaves a chain that reopens at the node's last head."""
    path = tmp_path / "chain.db"
    async with running_node(path) as node, RemoteLedger(node.url) as remote:
        builder = TxBuilder(named_key("c"), await remote.chain_id())
        await remote.submit(builder.faucet(named_key("c").address, T, nonce=0))
        await remote.wait_for_block(node.head.height + 1, WAIT)
    head = node.head
    async with running_node(path) as again:
        assert (again.head.height, again.head.hash) == (head.height, head.hash)


async def test_answers_are_msgpack_maps(node: ChainNode, http: aiohttp.ClientSession) -> None:
    """Query answers are msgpack maps with the documented keys."""
    async with asyncio.timeout(WAIT), http.get(node.url + "/v1/chain") as resp:
        chain = codec.unpack(await resp.read())
    assert set(chain) == {"chain_id", "genesis", "block_time", "height"}
    assert chain["block_time"] == FAST_BLOCK
    async with asyncio.timeout(WAIT), http.get(
            node.url + f"/v1/account/{OWNER.address}") as resp:
        account = codec.unpack(await resp.read())
    assert account == {"address": OWNER.address, "balance": 0, "nonce": 0, "next_nonce": 0,
                       "stakes": [], "staked_on": 0, "owner": None}


# --- per-address rate limit ---------------------------------------------------------------------


async def test_a_flooding_client_gets_429_with_retry_after(tmp_path: Path) -> None:
    """Past its burst one address gets 429 ``too_many_requests`` with Retry-After, on every
    endpoint; a typed NodeError reaches RemoteLedger users; the node keeps producing blocks."""
    from protocol.ledger.remote import NodeError  # noqa: PLC0415
    from protocol.ratelimit import RateLimitConfig  # noqa: PLC0415

    limit = RateLimitConfig(rate=1.0, burst=3.0)
    async with running_node(tmp_path / "chain.db", rate_limit=limit, limit_loopback=True) as n, \
            aiohttp.ClientSession() as session:
        statuses = []
        for path in ("/health", "/v1/blocks/head", "/v1/subnets", "/health"):
            async with session.get(n.url + path) as response:
                statuses.append(response.status)
                last_headers, last_body = response.headers, await response.read()
        assert statuses == [200, 200, 200, 429]
        assert 0 < float(last_headers["Retry-After"]) <= 1
        assert ErrorBody.decode(last_body).code == "too_many_requests"
        height = n.head.height
        async with RemoteLedger(n.url) as remote:
            with pytest.raises(NodeError, match="requests/s") as info:
                await remote.subnets()
        assert info.value.retry_after is not None
        await asyncio.sleep(4 * FAST_BLOCK)
        assert n.head.height > height  # blocks go on whatever the flood
        sample = n.metrics.registry.get_sample_value(
            "ensemble_chain_http_requests_total", {"endpoint": "/health", "status": "429"})
        assert sample == 1.0


async def test_local_clients_are_not_limited_by_default(tmp_path: Path) -> None:
    """A local network's processes all come from 127.0.0.1: by default they are exempt."""
    from protocol.ratelimit import RateLimitConfig  # noqa: PLC0415

    async with running_node(tmp_path / "chain.db", rate_limit=RateLimitConfig(rate=1.0,
                                                                           burst=1.0)) as n, \
            aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(n.url + "/health") as response:
                assert response.status == 200
