"""Stateful property test: random valid and invalid transactions keep the ledger's invariants.

Each step applies one transaction twice: to a copy of the state through the pure core (a
rejection must leave the copy's digest unchanged) and to the real chain in a block (the verdict
must be the same). Invariants hold after every step; at the end the block log replays
(``verify`` and a reopen) to the very same state digest.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger import verify
from protocol.ledger.errors import Reason, TxRejected
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.machine import apply_tx
from protocol.ledger.state_codec import state_digest
from protocol.ledger.testing import ChainDriver, named_key
from protocol.ledger.tx import Tx

COLD = ("c0", "c1", "c2")
HOT = ("h0", "h1", "h2", "h3")
HYPER = SubnetHyperparams(tempo=3, weights_rate_limit=1, immunity_period=2, max_allowed_uids=3,
                          min_burn=T // 10, max_burn=10 * T, activity_cutoff=50,
                          adjustment_interval=5, target_registrations_per_interval=1)
SALT = b"stateful-salt"

colds = st.sampled_from(COLD)
hots = st.sampled_from(HOT)
validators = st.sampled_from(("h0", "h0", "h0", *HOT))  # h0 holds the permit: favour it
anyone = st.sampled_from(COLD + HOT)
amounts = st.integers(1, 150 * T)
# mostly well-formed rows (so weights do get set), sometimes arbitrary (invalid) ones
_pairs = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 65535)), min_size=1, max_size=4,
                  unique_by=lambda pair: pair[0])
rows = st.one_of(
    _pairs.map(lambda pairs: ([u for u, _ in pairs], [w for _, w in pairs])),
    st.tuples(st.lists(st.integers(0, 4), max_size=4), st.lists(st.integers(0, 65535),
                                                                max_size=4)),
)


class LedgerMachine(RuleBasedStateMachine):
    """Random transactions against a dev chain with one small subnet."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.drv = ChainDriver.open(self.dir / "chain.db", funded=COLD, balance=100 * T,
                                    hyperparams=HYPER, subnet_lock_cost=T, snapshot_interval=7)
        assert self.drv.apply("c0", "create_subnet", max_lock_cost=T).applied
        # a populated subnet to start from: validator h0 (staked, permit after the epoch),
        # miners h1 and h2; h3 is left to register into the full subnet (pruning)
        for cold, hot in zip(COLD, HOT, strict=False):
            self.drv.send(cold, "register", 1, named_key(hot), max_burn=10 * T)
        self.drv.send("c0", "stake", named_key("h0").address, 50 * T)
        self.drv.run_to(self.drv.chain.subnet(1).next_epoch_block)
        self.included: list[Tx] = []
        self.commits: dict[str, tuple[list[int], list[int]]] = {}

    # --- the two-sided check ------------------------------------------------------------------

    def run_tx(self, name: str, op: str, *args: Any, **kwargs: Any) -> Reason | None:
        """Apply to a copy via the pure core, then on the chain; both verdicts must agree."""
        state = self.drv.chain.state_view()
        scratch = copy.deepcopy(state)
        before = state_digest(scratch)
        tx = getattr(self.drv.builder(name), op)(
            *args, nonce=state.nonce(named_key(name).public_key.raw), **kwargs)
        if not (state.knows(named_key(name).public_key.raw) or op == "faucet"):
            # the mempool's admission rule: a key the state knows nothing of is refused
            self.expect_submit_rejected(tx, Reason.UNKNOWN_SIGNER)
            event(f"{op}: unknown_signer")
            return Reason.UNKNOWN_SIGNER
        expected: Reason | None = None
        try:
            apply_tx(scratch, tx, state.height + 1)
        except TxRejected as exc:
            expected = exc.reason
            assert state_digest(scratch) == before
        receipt = self.drv.chain.submit(tx)
        self.drv.block()
        outcome = self.drv.chain.outcome(receipt.tx_hash)
        assert outcome is not None
        assert outcome.reason == expected
        event(f"{op}: {expected.value if expected else 'applied'}")
        if outcome.applied:
            self.included.append(tx)
        return expected

    def expect_submit_rejected(self, tx: Tx | bytes, *reasons: Reason) -> None:
        """A stateless rejection at submit leaves the chain exactly as it was."""
        before = state_digest(self.drv.chain.state_view())
        with pytest.raises(TxRejected) as info:
            self.drv.chain.submit(tx)
        assert info.value.reason in reasons
        assert self.drv.chain.pending == 0
        assert state_digest(self.drv.chain.state_view()) == before

    # --- rules --------------------------------------------------------------------------------

    @rule(src=anyone, dst=anyone, amount=amounts)
    def transfer(self, src: str, dst: str, amount: int) -> None:
        self.run_tx(src, "transfer", named_key(dst).address, amount)

    @rule(cold=colds, hot=hots, amount=amounts)
    def stake(self, cold: str, hot: str, amount: int) -> None:
        self.run_tx(cold, "stake", named_key(hot).address, amount)

    @rule(cold=colds, hot=hots, amount=amounts)
    def unstake(self, cold: str, hot: str, amount: int) -> None:
        self.run_tx(cold, "unstake", named_key(hot).address, amount)

    @rule(cold=colds, hot=hots, max_burn=st.sampled_from([0, 10 * T]),
          netuid=st.sampled_from([1, 1, 1, 2]))
    def register(self, cold: str, hot: str, max_burn: int, netuid: int) -> None:
        self.run_tx(cold, "register", netuid, named_key(hot), max_burn=max_burn)

    @rule(hot=validators, row=rows)
    def set_weights(self, hot: str, row: tuple[list[int], list[int]]) -> None:
        self.run_tx(hot, "set_weights", 1, *row)

    @rule(hot=validators, row=rows)
    def commit(self, hot: str, row: tuple[list[int], list[int]]) -> None:
        uids, weights = row
        if self.run_tx(hot, "commit_weights", 1, uids, weights, SALT) is None:
            self.commits[hot] = (uids, weights)

    @rule(hot=validators, honest=st.booleans())
    def reveal(self, hot: str, honest: bool) -> None:
        uids, weights = self.commits.get(hot, ([0], [1]))
        salt = SALT if honest else b"wrong-salt"
        self.run_tx(hot, "reveal_weights", 1, uids, weights, salt)

    @rule(hot=hots, port=st.integers(1, 65535))
    def serve(self, hot: str, port: int) -> None:
        self.run_tx(hot, "serve", 1, "127.0.0.1", port, 1)

    @rule(src=anyone, dst=anyone, amount=st.integers(1, 2_000 * T))
    def faucet(self, src: str, dst: str, amount: int) -> None:
        self.run_tx(src, "faucet", named_key(dst).address, amount)

    @rule(owner=st.sampled_from(["c0", "c1"]), changes=st.sampled_from([
        {"commit_reveal": True}, {"commit_reveal": False}, {"tempo": 2}, {"tempo": 4},
        {"max_allowed_uids": 2}, {"max_allowed_uids": 4}, {"immunity_period": 0},
        {"yuma3": True, "liquid_alpha": True}, {"max_allowed_validators": 1},
        {"owner_cut": 0}]))
    def set_hyperparams(self, owner: str, changes: dict[str, Any]) -> None:
        self.run_tx(owner, "set_hyperparams", 1, changes)

    @rule(count=st.integers(1, 4))
    def idle(self, count: int) -> None:
        self.drv.blocks(count)

    @rule(name=anyone, kind=st.sampled_from(["forged", "wrong_chain"]))
    def bad_submission(self, name: str, kind: str) -> None:
        state = self.drv.chain.state_view()
        tx = self.drv.builder(name).transfer(named_key("c0").address, 1,
                                             nonce=state.nonce(named_key(name).public_key.raw))
        if kind == "forged":
            bad = replace(tx, signature=tx.signature[:-1] + bytes([tx.signature[-1] ^ 0x80]))
            self.expect_submit_rejected(bad, Reason.BAD_SIGNATURE)
        else:
            self.expect_submit_rejected(replace(tx, chain_id=bytes(32)), Reason.BAD_CHAIN_ID)

    @rule(data=st.data())
    def replayed(self, data: st.DataObject) -> None:
        if self.included:
            tx = data.draw(st.sampled_from(self.included))
            self.expect_submit_rejected(tx, Reason.BAD_SEQUENCE)
            state = copy.deepcopy(self.drv.chain.state_view())
            before = state_digest(state)
            with pytest.raises(TxRejected):
                apply_tx(state, tx, state.height + 1)
            assert state_digest(state) == before

    @rule(data=st.binary(max_size=64))
    def malformed(self, data: bytes) -> None:
        self.expect_submit_rejected(data, Reason.MALFORMED)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def issuance_is_accounted(self) -> None:
        supply = self.drv.chain.state_view().supply()
        assert supply.accounted == supply.issuance

    @invariant()
    def nothing_negative_and_indexes_consistent(self) -> None:
        state = self.drv.chain.state_view()
        assert all(a.balance >= 0 and a.nonce >= 0 for a in state.accounts.values())
        assert all(v > 0 for per in state.stakes.values() for v in per.values())
        for subnet in state.subnets.values():
            assert subnet.pending_emission >= 0
            assert len(subnet.neurons) <= subnet.hyperparams.max_allowed_uids
            assert {n.hotkey: n.uid for n in subnet.neurons} == subnet.uid_of
            assert all(u < len(subnet.neurons) for n in subnet.neurons for u in n.weights)

    def teardown(self) -> None:
        try:
            chain = self.drv.chain
            digest, height = state_digest(chain.state_view()), chain.height
            chain.close()
            report = verify(self.dir / "chain.db")
            assert (report.height, report.state_digest) == (height, digest)
            again = ChainDriver.open(self.dir / "chain.db", funded=COLD, balance=100 * T,
                                     hyperparams=HYPER, subnet_lock_cost=T, snapshot_interval=7)
            assert state_digest(again.chain.state_view()) == digest
            again.chain.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestLedgerStateMachine = LedgerMachine.TestCase
