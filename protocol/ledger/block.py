"""Block headers: canonical bytes, hash, the proposer's signature, and the transactions digest.

Header wire form (docs/spec-ledger.md §5)::

    [version=1, height, prev_hash(32), timestamp_ms, tx_digest(32), state_digest(32), proposer(32)]

``hash = SHA-256(BLOCK_TAG || msgpack(header))``; the proposer signs the same bytes.
``tx_digest = SHA-256(TXS_TAG || tx_hash_1 || ... || tx_hash_k)`` over the included
transactions in block order. Block 1's ``prev_hash`` is the chain id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocol.keys import Keypair, verify
from protocol.ledger.wire import (
    U64_MAX,
    encode,
    read_bytes,
    read_int,
    read_struct,
    tagged_hash,
)

__all__ = ["BLOCK_TAG", "TXS_TAG", "BlockHeader", "tx_digest"]

BLOCK_TAG = b"ensemblenet/block/v1"
TXS_TAG = b"ensemblenet/txs/v1"
BLOCK_VERSION = 1


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """One block's header. ``state_digest`` is the state after applying the block."""

    height: int
    prev_hash: bytes
    timestamp_ms: int
    tx_digest: bytes
    state_digest: bytes
    proposer: bytes

    def to_wire(self) -> list[Any]:
        """The canonical field array."""
        return [BLOCK_VERSION, self.height, self.prev_hash, self.timestamp_ms, self.tx_digest,
                self.state_digest, self.proposer]

    def signing_bytes(self) -> bytes:
        """``BLOCK_TAG`` + canonical msgpack of the header: what the proposer signs."""
        return BLOCK_TAG + encode(self.to_wire())

    @property
    def hash(self) -> bytes:
        """The block hash: ``SHA-256`` of :meth:`signing_bytes`."""
        return tagged_hash(BLOCK_TAG, encode(self.to_wire()))

    def sign(self, key: Keypair) -> bytes:
        """The proposer's signature (``key`` must be the ``proposer``)."""
        return key.sign(self.signing_bytes())

    def signature_valid(self, signature: bytes) -> bool:
        """Whether ``signature`` is the proposer's valid signature of this header."""
        return verify(self.proposer, self.signing_bytes(), signature)

    @classmethod
    def from_wire(cls, value: Any) -> BlockHeader:
        """Parse a header array (raises :class:`protocol.ledger.errors.DecodeError`)."""
        version, height, prev, ts, txd, std, proposer = read_struct(value, 7, "header")
        read_int(version, BLOCK_VERSION, BLOCK_VERSION, "block version")
        return cls(read_int(height, 1, U64_MAX, "height"), read_bytes(prev, 32, 32, "prev_hash"),
                   read_int(ts, 0, U64_MAX, "timestamp_ms"), read_bytes(txd, 32, 32, "tx_digest"),
                   read_bytes(std, 32, 32, "state_digest"),
                   read_bytes(proposer, 32, 32, "proposer"))


def tx_digest(tx_hashes: Iterable[bytes]) -> bytes:
    """``SHA-256(TXS_TAG || h1 || h2 ...)`` over 32-byte transaction hashes, in block order."""
    return tagged_hash(TXS_TAG, b"".join(tx_hashes))
