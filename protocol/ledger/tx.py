"""Signed transactions: canonical bytes, signing, hashing and the strict parser.

Wire form (docs/spec-ledger.md §4), a canonical msgpack array::

    [version=1, chain_id(32), signer(32), nonce, kind, payload, signature(64), cosignature(64)|nil]

The signer signs ``TX_TAG || msgpack([version, chain_id, signer, nonce, kind, payload])``;
a ``register`` transaction's hotkey signs the same bytes as its cosignature. The transaction hash
is ``SHA-256`` of the whole wire form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from protocol.codec import Limits
from protocol.keys import Keypair, encode_address, verify
from protocol.ledger.calls import CALL_TYPES, Call, Register
from protocol.ledger.errors import DecodeError, Reason, TxRejected
from protocol.ledger.wire import (
    U64_MAX,
    decode_canonical,
    encode,
    read_bytes,
    read_int,
    read_str,
    read_struct,
)

__all__ = ["TX_TAG", "TX_VERSION", "Tx", "check_signatures", "decode_tx", "sign_tx"]

TX_TAG = b"ensemblenet/tx/v1"
TX_VERSION = 1
#: Largest accepted transaction. A full 4096-uid weights reveal is about 25 KiB.
MAX_TX_BYTES = 64 * 1024
_TX_LIMITS = Limits(max_body=MAX_TX_BYTES, max_str=1024, max_bin=1024, max_array=4096,
                    max_map=0, max_depth=4)
_SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class Tx:
    """A transaction: who signs (``signer``), its sequence number, the call, the signatures.

    ``cosignature`` is the hotkey's signature for :class:`Register`, ``None`` for every other
    call. Build one with :func:`sign_tx` or :class:`protocol.ledger.builders.TxBuilder`.
    """

    chain_id: bytes
    signer: bytes
    nonce: int
    call: Call
    signature: bytes = b""
    cosignature: bytes | None = None

    def signing_bytes(self) -> bytes:
        """``TX_TAG`` + canonical msgpack of the unsigned fields: what both keys sign."""
        return TX_TAG + encode([TX_VERSION, self.chain_id, self.signer, self.nonce,
                                self.call.KIND, self.call.to_wire()])

    def encode(self) -> bytes:
        """The canonical wire form."""
        return encode([TX_VERSION, self.chain_id, self.signer, self.nonce, self.call.KIND,
                       self.call.to_wire(), self.signature, self.cosignature])

    @property
    def hash(self) -> bytes:
        """``SHA-256`` of :meth:`encode` (32 bytes)."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def signer_address(self) -> str:
        """The signer as an ``ens1...`` address."""
        return encode_address(self.signer)


def decode_tx(data: bytes) -> Tx:
    """Parse wire bytes into a :class:`Tx`. Signatures are *not* checked here.

    Raises:
        TxRejected: reason ``malformed`` for anything that is not exactly a canonical
            transaction (bad msgpack, wrong field types or ranges, unknown kind, a cosignature
            on a call that takes none or none on one that needs it, non-canonical bytes).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TxRejected(Reason.MALFORMED, "a transaction is bytes")
    try:
        return _parse(decode_canonical(bytes(data), _TX_LIMITS))
    except DecodeError as exc:
        raise TxRejected(Reason.MALFORMED, str(exc)) from None


def _parse(fields: list[Any]) -> Tx:
    version, chain_id, signer, nonce, kind, payload, signature, cosig = read_struct(
        fields, 8, "transaction")
    read_int(version, TX_VERSION, TX_VERSION, "version")
    call_type = CALL_TYPES.get(read_str(kind, 1, 32, "kind"))
    if call_type is None:
        raise DecodeError(f"unknown transaction kind {kind!r}")
    if call_type.NEEDS_COSIGNATURE:
        cosig = read_bytes(cosig, _SIGNATURE_SIZE, _SIGNATURE_SIZE, "cosignature")
    elif cosig is not None:
        raise DecodeError(f"a {kind} transaction carries no cosignature")
    return Tx(chain_id=read_bytes(chain_id, 32, 32, "chain_id"),
              signer=read_bytes(signer, 32, 32, "signer"),
              nonce=read_int(nonce, 0, U64_MAX, "nonce"),
              call=call_type.from_wire(payload),
              signature=read_bytes(signature, _SIGNATURE_SIZE, _SIGNATURE_SIZE, "signature"),
              cosignature=cosig)


def check_signatures(tx: Tx) -> None:
    """Check the signer's signature and, for ``register``, the hotkey's cosignature.

    Raises:
        TxRejected: reason ``bad_signature``.
    """
    message = tx.signing_bytes()
    if not verify(tx.signer, message, tx.signature):
        raise TxRejected(Reason.BAD_SIGNATURE, "the signer's signature does not verify")
    if isinstance(tx.call, Register) and not verify(tx.call.hotkey, message,
                                                    tx.cosignature or b""):
        raise TxRejected(Reason.BAD_SIGNATURE, "the hotkey's cosignature does not verify")


def sign_tx(call: Call, signer: Keypair, *, nonce: int, chain_id: bytes,
            cosigner: Keypair | None = None) -> Tx:
    """Build and sign a transaction; ``cosigner`` is the hotkey for :class:`Register`.

    Raises:
        TxRejected: ``malformed`` if the result would not parse (a field out of range, a
            missing or superfluous cosigner), so a bad transaction fails here, not on the chain.
    """
    unsigned = Tx(chain_id=chain_id, signer=signer.public_key.raw, nonce=nonce, call=call)
    message = unsigned.signing_bytes()
    tx = Tx(chain_id=chain_id, signer=unsigned.signer, nonce=nonce, call=call,
            signature=signer.sign(message),
            cosignature=cosigner.sign(message) if cosigner is not None else None)
    decode_tx(tx.encode())
    return tx
