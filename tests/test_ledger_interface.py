"""The async Ledger interface over the embedded chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.builders import TxBuilder, weights_to_u16
from protocol.ledger.errors import NoSuchItemError, Reason, TxRejected, WaitTimeout
from protocol.ledger.events import Registered, Transferred
from protocol.ledger.interface import EmbeddedLedger, Ledger, submit_and_wait
from protocol.ledger.testing import ChainDriver, named_key


async def produce_blocks(ledger: EmbeddedLedger, count: int) -> None:
    """Produce blocks one by one, yielding to waiters in between."""
    for i in range(count):
        await ledger.produce_block(1_790_000_000_000 + 1000 * i)
        await asyncio.sleep(0)


async def test_embedded_ledger_round_trip(tmp_path: Path) -> None:
    """Submit through the interface, wait for the block, read accounts, subnets and neurons."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("alice",))
    ledger = EmbeddedLedger(drv.chain)
    assert isinstance(ledger, Ledger)
    alice = TxBuilder(named_key("alice"), await ledger.chain_id())
    bob = named_key("bob").address

    account = await ledger.account(named_key("alice").address)
    tx = alice.transfer(bob, 3 * T, nonce=account.next_nonce)
    producer = asyncio.create_task(produce_blocks(ledger, 1))
    outcome = await submit_and_wait(ledger, tx, timeout=5)
    await producer
    assert outcome.events == (Transferred(named_key("alice").address, bob, 3 * T),)
    assert (await ledger.account(bob)).balance == 3 * T
    assert await ledger.block_height() == 1

    create = alice.create_subnet(max_lock_cost=T, nonce=1)
    register = alice.register(1, named_key("alice-hot"), max_burn=T, nonce=2)
    await ledger.submit(create)
    await ledger.submit(register)
    assert (await ledger.account(named_key("alice").address)).next_nonce == 3
    await ledger.produce_block(1_790_000_010_000)
    result = await ledger.wait_for_tx(register.hash, timeout=1)
    assert isinstance(result.events[0], Registered)
    assert [s.netuid for s in await ledger.subnets()] == [1]
    neuron = await ledger.neuron(1, named_key("alice-hot").address)
    assert (neuron.uid, neuron.coldkey) == (0, named_key("alice").address)
    assert (await ledger.metagraph(1)).hotkeys == (named_key("alice-hot").address,)
    with pytest.raises(NoSuchItemError):
        await ledger.subnet(7)
    with pytest.raises(TxRejected) as info:
        await ledger.submit(register)
    assert info.value.reason is Reason.BAD_SEQUENCE
    await ledger.aclose()


async def test_waits_time_out(tmp_path: Path) -> None:
    """wait_for_block and wait_for_tx raise WaitTimeout when no block comes."""
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("alice",))
    ledger = EmbeddedLedger(drv.chain)
    with pytest.raises(WaitTimeout):
        await ledger.wait_for_block(1, timeout=0.05)
    with pytest.raises(WaitTimeout):
        await ledger.wait_for_tx(b"\x00" * 32, timeout=0.05)
    waiter = asyncio.create_task(ledger.wait_for_block(2, timeout=5))
    await produce_blocks(ledger, 2)
    assert await waiter == 2
    await ledger.aclose()


def test_weights_to_u16() -> None:
    """Weights are max-upscaled to 65535 and rounded; all-zero stays zero."""
    assert weights_to_u16([0.5, 0.25, 0.0]) == [65535, 32768, 0]
    assert weights_to_u16([0.0, 0.0]) == [0, 0]
    with pytest.raises(ValueError, match="non-negative"):
        weights_to_u16([-1.0])
