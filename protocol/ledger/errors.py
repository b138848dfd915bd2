"""The ledger's errors, all under :class:`protocol.errors.LedgerError`.

    LedgerError
    ├── TxRejected            a transaction was refused; ``reason`` is a stable code (``Reason``)
    ├── DecodeError           bytes that do not decode to a ledger value (tx, block, state)
    ├── HyperparamError       a subnet hyperparameter is out of its bounds or of the wrong type
    ├── StoreError            the block store cannot be opened, read or written
    │   ├── SchemaVersionError  the database was written by a newer (or unknown) schema
    │   └── ChainInUseError     another process owns the chain file (holds ``PATH.lock``)
    ├── ChainClosedError      the engine was closed, or stopped after a failed commit
    ├── NoSuchItemError       a queried subnet or neuron does not exist
    ├── WaitTimeout           a wait for a block or a transaction outcome timed out
    ├── CorruptChainError     ``verify`` (or a reopen) found a bad block; ``height`` names it
    └── NodeError             a chain node was unreachable or answered outside its API
"""

from __future__ import annotations

from enum import Enum

from protocol.errors import LedgerError

__all__ = [
    "ChainClosedError",
    "ChainInUseError",
    "CorruptChainError",
    "DecodeError",
    "HyperparamError",
    "LedgerError",
    "NoSuchItemError",
    "NodeError",
    "Reason",
    "SchemaVersionError",
    "StoreError",
    "TxRejected",
    "WaitTimeout",
]


class Reason(str, Enum):
    """Stable codes a rejected transaction carries (docs/spec-ledger.md §6).

    The values are part of the wire contract: clients switch on them, so never rename one.
    """

    MALFORMED = "malformed"
    BAD_CHAIN_ID = "bad_chain_id"
    BAD_SIGNATURE = "bad_signature"
    BAD_SEQUENCE = "bad_sequence"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_STAKE = "insufficient_stake"
    SUPPLY_CAP = "supply_cap"
    NOT_PERMITTED = "not_permitted"
    UNKNOWN_SUBNET = "unknown_subnet"
    UNKNOWN_HOTKEY = "unknown_hotkey"
    ALREADY_REGISTERED = "already_registered"
    SUBNET_FULL = "subnet_full"
    BURN_TOO_HIGH = "burn_too_high"
    LOCK_TOO_HIGH = "lock_too_high"
    TOO_MANY_SUBNETS = "too_many_subnets"
    INVALID_HYPERPARAMS = "invalid_hyperparams"
    RATE_LIMITED = "rate_limited"
    INVALID_WEIGHTS = "invalid_weights"
    COMMIT_REVEAL_REQUIRED = "commit_reveal_required"
    COMMIT_REVEAL_DISABLED = "commit_reveal_disabled"
    COMMIT_PENDING = "commit_pending"
    BAD_REVEAL = "bad_reveal"
    NOT_DEV_CHAIN = "not_dev_chain"
    MEMPOOL_FULL = "mempool_full"
    UNKNOWN_SIGNER = "unknown_signer"


class TxRejected(LedgerError):
    """A transaction was refused and changed nothing.

    Attributes:
        reason: the stable code (a :class:`Reason`); ``str(reason.value)`` goes on the wire.
        message: a human explanation (not stable; do not parse it).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


class DecodeError(LedgerError, ValueError):
    """Bytes are not the canonical encoding of a ledger value; the message says which field."""


class HyperparamError(LedgerError, ValueError):
    """A hyperparameter value has the wrong type, is out of bounds, or breaks a cross-field rule."""


class StoreError(LedgerError):
    """The block store could not be opened, read or written (SQLite errors are translated here)."""


class SchemaVersionError(StoreError):
    """The database's schema version is not one this software can open.

    Attributes:
        found: the version recorded in the database.
        supported: the version this software writes.
    """

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"ledger database has schema version {found}, this software supports {supported}: "
            + ("upgrade ensemblenet to open it" if found > supported
               else "the database is not a ledger database this software knows"))
        self.found = found
        self.supported = supported


class ChainClosedError(LedgerError):
    """The chain engine is closed, or stopped itself after a block failed to commit."""


class NoSuchItemError(LedgerError, LookupError):
    """A queried subnet or neuron does not exist (an HTTP service maps this to 404)."""


class WaitTimeout(LedgerError, TimeoutError):
    """``wait_for_block`` or ``wait_for_tx`` gave up after its timeout."""


class CorruptChainError(LedgerError):
    """A stored block does not check out (hash link, tx digest, signature, state digest...).

    Attributes:
        height: the first bad block's height (0 means the genesis record itself).
    """

    def __init__(self, height: int, message: str) -> None:
        super().__init__(f"block {height}: {message}")
        self.height = height


class ChainInUseError(StoreError):
    """Another process owns the chain file (holds ``PATH.lock``)."""


class NodeError(LedgerError):
    """The chain node could not be reached, or answered outside the documented API.

    Attributes:
        status: the HTTP status, or ``None`` when no answer came.
        code: the error body's code (``unreachable``, ``timeout`` or ``http_<status>`` when
            there was no readable error body).
        retry_after: seconds the node asked the client to wait, if it did.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "unreachable",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
