"""Crash safety of the chain node, with a real process: ``kill -9`` mid-stream loses nothing
that was acknowledged, and the restarted node continues on a chain that verifies.

"Acknowledged" means what the ledger guarantees: the transaction's outcome was reported as
*applied*, which the node only does once the block holding it is committed to disk.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from protocol.cli.main import main
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.builders import TxBuilder
from protocol.ledger.errors import WaitTimeout
from protocol.ledger.remote import NodeError, RemoteLedger
from protocol.ledger.testing import named_key
from protocol.ledger.tx import Tx

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(
    r"chain node listening on (http://\S+) \(height (\d+), chain id ([0-9a-f]{64})\)")
#: Seconds a node may take to start (imports, replay) on a loaded machine.
START_TIMEOUT = 60.0
WAIT = 20.0
SIGNERS = 8
TXS_PER_SIGNER = 25
#: Transactions of one signer in flight at once: enough that blocks carry many, few enough
#: that the stream spans several blocks and the kill lands in the middle of it.
IN_FLIGHT = 4
KILL_AFTER = 90
FAUCET = 100 * T


def amount(nonce: int) -> int:
    """The transfer amount of a signer's transaction ``nonce`` (≥ 1): distinct per nonce."""
    return T + nonce


@dataclass
class Node:
    """A chain node subprocess and its URL."""

    process: asyncio.subprocess.Process
    url: str
    height: int


@asynccontextmanager
async def node_process(db: Path, log: IO[bytes]) -> AsyncIterator[Node]:
    """Run ``ensemble chain serve`` on ``db``, wait for its ready line; kill it if the test
    leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "protocol.cli.main", "chain", "serve", "--db", str(db), "--dev",
        "--block-time", "0.2", "--port", "0", cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=log)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)).decode()
        match = READY.fullmatch(line.strip())
        assert match, f"unexpected first line {line!r}"
        yield Node(process, match.group(1), int(match.group(2)))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class Stream:
    """Every transaction sent, and those acknowledged (applied in a committed block)."""

    sent: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # hash → signer, nonce
    acked: dict[bytes, int] = field(default_factory=dict)  # hash → block height
    enough: asyncio.Event = field(default_factory=asyncio.Event)


def build(builder: TxBuilder, nonce: int) -> Tx:
    """A signer's transaction ``nonce``: first fund itself, then pay the sink."""
    me = builder.keypair.address
    if nonce == 0:
        return builder.faucet(me, FAUCET, nonce=0)
    return builder.transfer(named_key("sink").address, amount(nonce), nonce=nonce)


async def stream_signer(ledger: RemoteLedger, builder: TxBuilder, index: int,
                        stream: Stream) -> None:
    """Send this signer's transactions with at most IN_FLIGHT unacknowledged; stop on failure."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def await_outcome(tx_hash: bytes) -> None:
        try:
            outcome = await ledger.wait_for_tx(tx_hash, WAIT)
        finally:
            slots.release()
        assert outcome.applied, outcome
        stream.acked[tx_hash] = outcome.height or 0
        if len(stream.acked) >= KILL_AFTER:
            stream.enough.set()

    waiters: list[asyncio.Task[None]] = []
    try:
        for nonce in range(TXS_PER_SIGNER):
            await slots.acquire()
            tx = build(builder, nonce)
            stream.sent[tx.hash] = (index, nonce)
            await ledger.submit(tx)
            waiters.append(asyncio.create_task(await_outcome(tx.hash)))
    finally:
        results = await asyncio.gather(*waiters, return_exceptions=True)
    for result in results:  # only the node's death may interrupt an outcome
        assert result is None or isinstance(result, NodeError | WaitTimeout), result


@pytest.fixture
def log(tmp_path: Path) -> Iterator[IO[bytes]]:
    """The nodes' stderr (their log), kept in tmp_path for a post-mortem."""
    with (tmp_path / "node.log").open("wb") as file:
        yield file


async def test_kill_9_mid_stream_loses_no_acknowledged_transaction(
        tmp_path: Path, log: IO[bytes]) -> None:
    """Acknowledged txs survive SIGKILL; balances equal the applied txs; verify passes."""
    db = tmp_path / "chain.db"
    stream = Stream()
    async with node_process(db, log) as node, RemoteLedger(node.url) as ledger:
        chain_id = await ledger.chain_id()
        builders = [TxBuilder(named_key(f"crash-{i}"), chain_id) for i in range(SIGNERS)]
        senders = [asyncio.create_task(stream_signer(ledger, b, i, stream))
                   for i, b in enumerate(builders)]
        await asyncio.wait_for(stream.enough.wait(), WAIT * 2)
        node.process.send_signal(signal.SIGKILL)
        assert await node.process.wait() == -signal.SIGKILL
        results = await asyncio.gather(*senders, return_exceptions=True)
    assert all(r is None or isinstance(r, NodeError) for r in results), results
    acked = dict(stream.acked)
    assert KILL_AFTER <= len(acked) < SIGNERS * TXS_PER_SIGNER  # killed mid-stream

    async with node_process(db, log) as again, RemoteLedger(again.url) as ledger:
        assert again.height >= max(acked.values())
        applied: dict[bytes, int] = {}
        for tx_hash in stream.sent:
            try:
                outcome = await ledger.wait_for_tx(tx_hash, timeout=0)
            except WaitTimeout:
                continue
            assert outcome.applied
            applied[tx_hash] = outcome.height or 0
        for tx_hash, height in acked.items():
            assert applied.get(tx_hash) == height  # committed where it was acknowledged
        await check_balances(ledger, stream, applied, builders)
        again.process.send_signal(signal.SIGTERM)  # a clean stop: exit code 0
        assert await asyncio.wait_for(again.process.wait(), WAIT) == 0
    assert main(["chain", "verify", "--db", str(db)]) == 0


async def check_balances(ledger: RemoteLedger, stream: Stream, applied: dict[bytes, int],
                         builders: list[TxBuilder]) -> None:
    """Every account holds exactly what the applied transactions (a nonce prefix) give it."""
    nonces: dict[int, list[int]] = {i: [] for i in range(len(builders))}
    for tx_hash in applied:
        signer, nonce = stream.sent[tx_hash]
        nonces[signer].append(nonce)
    sink = 0
    for signer, builder in enumerate(builders):
        done = sorted(nonces[signer])
        assert done == list(range(len(done)))  # a prefix: sequence numbers never skip
        paid = sum(amount(n) for n in done if n > 0)
        sink += paid
        account = await ledger.account(builder.keypair.address)
        assert (account.nonce, account.balance) == (
            len(done), (FAUCET - paid) if done else 0)
    assert (await ledger.account(named_key("sink").address)).balance == sink
