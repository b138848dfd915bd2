"""The one exception tree of Ensemblenet.

Every error the project raises on purpose derives from :class:`EnsembleError`.
Foreign exceptions (aiohttp, msgpack, nacl, cryptography, sqlite3) are translated
once, at the boundary where they occur, into one of these.

    EnsembleError
    ├── ConfigError                      bad configuration or CLI input
    ├── IdentityError
    │   ├── AddressError                 malformed address or wrong checksum
    │   └── KeyfileError
    │       ├── WrongPasswordError       authentication of the key file failed with this password
    │       ├── KeyfileCorruptError      truncated or tampered file (structure or integrity broken)
    │       ├── KeyfilePermissionError   file readable by others, or cannot be written
    │       └── KeyfileExistsError       refusing to overwrite a key
    ├── WireError                        a request or answer broke the wire protocol (HTTP status)
    │   ├── MalformedError        400    bad headers, body, field types
    │   ├── UnauthenticatedError  401    missing, empty or wrong signature; wrong receiver
    │   │   └── ReplayError       401    stale or future timestamp, duplicate nonce
    │   ├── ForbiddenError        403    caller not allowed
    │   ├── NotFoundError         404    unknown route
    │   ├── PayloadTooLargeError  413    body or msgpack limits exceeded
    │   ├── RateLimitedError      429    per-caller token bucket empty (retry_after)
    │   ├── HandlerError          500    the handler failed (never leaks internals)
    │   ├── OverloadedError       503    admission queue full (retry_after)
    │   └── DeadlineExceededError 504    the request's deadline passed
    ├── QueryError                       client side: one target could not give a verified answer
    │   ├── ConnectFailed                could not connect
    │   ├── QueryTimeout                 connect, first-byte or total deadline fired (``phase``)
    │   ├── RemoteError                  the miner answered with a (signed or unsigned) error body
    │   ├── ReceiptError                 answer unsigned, wrongly signed, or from another key
    │   └── StreamIntegrityError         a stream was cut, altered or ended without its trailer
    ├── ConsensusInputError              Yuma inputs of inconsistent shapes
    └── LedgerError                      the ledger refused or could not apply something
"""

from __future__ import annotations


class EnsembleError(Exception):
    """Root of every error Ensemblenet raises on purpose."""


class ConfigError(EnsembleError):
    """Configuration or command-line input is invalid; the message says what to change."""


# --- identities -----------------------------------------------------------------------------


class IdentityError(EnsembleError):
    """A key, address or wallet problem."""


class AddressError(IdentityError, ValueError):
    """An address is malformed or its checksum does not match (likely a typo)."""


class KeyfileError(IdentityError):
    """A key file could not be read or written."""


class WrongPasswordError(KeyfileError):
    """The key file is intact but this password does not open it."""


class KeyfileCorruptError(KeyfileError):
    """The key file is truncated, tampered with, or not a key file at all."""


class KeyfilePermissionError(KeyfileError):
    """The key file's permissions are unsafe or the file cannot be accessed."""


class KeyfileExistsError(KeyfileError):
    """A key file already exists where a new one would be written."""


# --- the wire -------------------------------------------------------------------------------


class WireError(EnsembleError):
    """A protocol violation, with the HTTP status and stable error code it maps to.

    Attributes:
        status: the HTTP status code SPEC.md assigns to this error.
        code: a stable machine-readable code (``snake_case``), part of the wire error body.
        retry_after: seconds the caller should wait before retrying, or ``None``.
    """

    status = 400
    code = "malformed"

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class MalformedError(WireError):
    """The request or response does not follow the wire format (HTTP 400)."""

    status = 400
    code = "malformed"


class UnauthenticatedError(WireError):
    """The signature is missing, empty, wrong, or addressed to another receiver (HTTP 401)."""

    status = 401
    code = "bad_signature"


class ReplayError(UnauthenticatedError):
    """The timestamp is outside the window or the nonce was already seen (HTTP 401)."""

    status = 401
    code = "replay"


class ForbiddenError(WireError):
    """The caller is authenticated but not allowed to call this miner (HTTP 403)."""

    status = 403
    code = "forbidden"


class NotFoundError(WireError):
    """No handler is registered for the route (HTTP 404)."""

    status = 404
    code = "unknown_route"


class PayloadTooLargeError(WireError):
    """The body or one of its msgpack containers exceeds a configured limit (HTTP 413)."""

    status = 413
    code = "too_large"


class RateLimitedError(WireError):
    """The caller exceeded its rate limit; see ``retry_after`` (HTTP 429)."""

    status = 429
    code = "rate_limited"


class HandlerError(WireError):
    """The handler failed; details stay in the miner's log (HTTP 500)."""

    status = 500
    code = "handler_failed"


class OverloadedError(WireError):
    """The miner's admission queue is full; see ``retry_after`` (HTTP 503)."""

    status = 503
    code = "overloaded"


class DeadlineExceededError(WireError):
    """The request's deadline passed before an answer was ready (HTTP 504)."""

    status = 504
    code = "deadline_exceeded"


#: Every concrete wire error class, keyed by HTTP status (used to rebuild errors from the wire).
WIRE_ERRORS_BY_STATUS: dict[int, type[WireError]] = {
    cls.status: cls
    for cls in (MalformedError, UnauthenticatedError, ForbiddenError, NotFoundError,
                PayloadTooLargeError, RateLimitedError, HandlerError, OverloadedError,
                DeadlineExceededError)
}


# --- the client -----------------------------------------------------------------------------


class QueryError(EnsembleError):
    """One target could not give a verified answer. Carried in results, raised by ``query_one``."""

    kind = "error"


class ConnectFailed(QueryError):
    """The TCP connection to the target could not be made."""

    kind = "connect"


class QueryTimeout(QueryError):
    """A client deadline fired. ``phase`` is ``connect``, ``first_byte`` or ``total``."""

    kind = "timeout"

    def __init__(self, message: str, *, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class RemoteError(QueryError):
    """The target answered with an error body.

    Attributes:
        status: HTTP status of the answer.
        code: the error code from the body (or ``http_<status>`` if the body was unreadable).
        retry_after: seconds to wait, if the target said so.
        signed: whether the error answer carried a valid receipt from the target.
    """

    kind = "remote"

    def __init__(self, message: str, *, status: int, code: str,
                 retry_after: float | None = None, signed: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.signed = signed


class ReceiptError(QueryError):
    """The answer's receipt is missing, malformed, wrongly signed or from another key."""

    kind = "receipt"


class StreamIntegrityError(QueryError):
    """A stream was cut, reordered, altered or ended without a valid signed trailer."""

    kind = "stream"


# --- other layers ---------------------------------------------------------------------------


class ConsensusInputError(EnsembleError, ValueError):
    """Yuma Consensus inputs have inconsistent shapes or invalid values."""


class LedgerError(EnsembleError):
    """The ledger refused or could not apply an operation."""
