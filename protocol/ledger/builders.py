"""Builders of signed transactions, for clients. Sequence numbers come from the caller
(``AccountInfo.next_nonce``), so a builder never talks to a ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from protocol.keys import Keypair, decode_address
from protocol.ledger.calls import (
    Call,
    CommitWeights,
    CreateSubnet,
    Faucet,
    Register,
    RevealWeights,
    Serve,
    SetHyperparams,
    SetWeights,
    Stake,
    Transfer,
    Unstake,
)
from protocol.ledger.hyperparams import HyperparamValue, spec_of
from protocol.ledger.tx import Tx, sign_tx
from protocol.ledger.units import U16_ONE
from protocol.ledger.weights import commit_digest

__all__ = ["TxBuilder", "weights_to_u16"]


def weights_to_u16(values: Sequence[float]) -> list[int]:
    """Scale non-negative weights so the largest is 65535 (rounded), as the chain stores them.

    Returns all zeros if every value is 0. Raises ``ValueError`` on a negative value.
    """
    if any(v < 0 for v in values):
        raise ValueError("weights must be non-negative")
    top = max(values, default=0.0)
    return [round(v / top * U16_ONE) if top > 0 else 0 for v in values]


class TxBuilder:
    """Signs transactions with one key for one chain.

    Every method takes the ``nonce`` to use and returns a signed :class:`Tx`; they raise
    :class:`protocol.ledger.errors.TxRejected` (``malformed``) for out-of-range fields and
    :class:`protocol.errors.AddressError` for bad addresses.
    """

    def __init__(self, keypair: Keypair, chain_id: bytes) -> None:
        self.keypair = keypair
        self.chain_id = chain_id

    def _sign(self, call: Call, nonce: int, cosigner: Keypair | None = None) -> Tx:
        return sign_tx(call, self.keypair, nonce=nonce, chain_id=self.chain_id,
                       cosigner=cosigner)

    def transfer(self, dest: str, amount: int, *, nonce: int) -> Tx:
        """Send ``amount`` units to ``dest``."""
        return self._sign(Transfer(decode_address(dest), amount), nonce)

    def stake(self, hotkey: str, amount: int, *, nonce: int) -> Tx:
        """Stake ``amount`` units of this coldkey's balance on ``hotkey``."""
        return self._sign(Stake(decode_address(hotkey), amount), nonce)

    def unstake(self, hotkey: str, amount: int, *, nonce: int) -> Tx:
        """Return ``amount`` units of stake on ``hotkey`` to this coldkey's balance."""
        return self._sign(Unstake(decode_address(hotkey), amount), nonce)

    def register(self, netuid: int, hotkey: Keypair, *, max_burn: int, nonce: int) -> Tx:
        """Register ``hotkey`` (which cosigns) on ``netuid``, paying at most ``max_burn``."""
        return self._sign(Register(netuid, hotkey.public_key.raw, max_burn), nonce, hotkey)

    def create_subnet(self, *, max_lock_cost: int, nonce: int) -> Tx:
        """Create a subnet owned by this coldkey."""
        return self._sign(CreateSubnet(max_lock_cost), nonce)

    def set_hyperparams(self, netuid: int, changes: Mapping[str, HyperparamValue], *,
                        nonce: int) -> Tx:
        """Change hyperparameters of an owned subnet (ints given for float fields are
        converted; names are sorted as the wire form requires)."""
        typed = tuple((name, float(value) if spec_of(name).kind is float else value)
                      for name, value in sorted(changes.items()))
        return self._sign(SetHyperparams(netuid, typed), nonce)

    def serve(self, netuid: int, host: str, port: int, protocol: int, *, nonce: int) -> Tx:
        """Publish this hotkey's endpoint."""
        return self._sign(Serve(netuid, host, port, protocol), nonce)

    def set_weights(self, netuid: int, uids: Sequence[int], weights: Sequence[int], *,
                    nonce: int) -> Tx:
        """Set this hotkey's weights (u16 values, see :func:`weights_to_u16`)."""
        return self._sign(SetWeights(netuid, tuple(uids), tuple(weights)), nonce)

    def commit_weights(self, netuid: int, uids: Sequence[int], weights: Sequence[int],
                       salt: bytes, *, nonce: int) -> Tx:
        """Commit to a weights row; keep ``uids``, ``weights`` and ``salt`` to reveal it."""
        digest = commit_digest(self.keypair.public_key.raw, netuid, uids, weights, salt)
        return self._sign(CommitWeights(netuid, digest), nonce)

    def reveal_weights(self, netuid: int, uids: Sequence[int], weights: Sequence[int],
                       salt: bytes, *, nonce: int) -> Tx:
        """Reveal the committed row."""
        return self._sign(RevealWeights(netuid, tuple(uids), tuple(weights), salt), nonce)

    def faucet(self, dest: str, amount: int, *, nonce: int) -> Tx:
        """Mint ``amount`` units to ``dest`` (dev chains only)."""
        return self._sign(Faucet(decode_address(dest), amount), nonce)
