"""Signed requests and receipts: canonical bytes, headers, and their verification (no I/O).

SPEC.md §3 is the normative description; this module is its reference implementation.
Every field is required and signed. Nothing is optional, nothing is skipped: a missing,
empty or malformed header is rejected before any other work.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from protocol import codec
from protocol.errors import (
    DeadlineExceededError,
    MalformedError,
    PayloadTooLargeError,
    ReceiptError,
    UnauthenticatedError,
)
from protocol.keys import Keypair, PublicKey, decode_address, encode_address, verify

PROTOCOL_VERSION = 1
REQUEST_DOMAIN = b"ensemblenet:request\x00"
RECEIPT_DOMAIN = b"ensemblenet:receipt\x00"
METHOD = "POST"
ROUTE_PREFIX = "/v1/"
NONCE_SIZE = 16
DIGEST_SIZE = 32

H_VERSION = "Ensemble-Version"
H_CALLER = "Ensemble-Caller"
H_RECEIVER = "Ensemble-Receiver"
H_NETUID = "Ensemble-Netuid"
H_TIMESTAMP = "Ensemble-Timestamp"
H_NONCE = "Ensemble-Nonce"
H_DEADLINE = "Ensemble-Deadline"
H_SIGNATURE = "Ensemble-Signature"
H_MINER = "Ensemble-Miner"
H_RECEIPT_TIMESTAMP = "Ensemble-Receipt-Timestamp"
H_RECEIPT_SIGNATURE = "Ensemble-Receipt-Signature"
REQUEST_HEADERS = (H_VERSION, H_CALLER, H_RECEIVER, H_NETUID, H_TIMESTAMP, H_NONCE,
                   H_DEADLINE, H_SIGNATURE)

MSGPACK_TYPE = "application/msgpack"
STREAM_TYPE = "application/vnd.ensemble.stream"

_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
# Routes are short ASCII names; a strict pattern keeps the signed bytes unambiguous. The
# patterns are used with fullmatch: "$" would also match before a trailing newline.
_ROUTE_RE = re.compile(r"/v1/[a-z][a-z0-9_.-]{0,63}")
_DIGITS_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX_RE = re.compile(r"[0-9a-f]*")


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """Everything a request signature covers except the body, which enters as its digest.

    Attributes:
        route: ``/v1/<message type>``.
        caller: the caller's 32-byte public key (its hotkey).
        receiver: the miner's 32-byte public key.
        netuid: the subnet the request is made in.
        timestamp_ms: caller's clock, Unix milliseconds.
        nonce: 16 random bytes, unique per (caller, request).
        deadline_ms: absolute Unix milliseconds after which the caller no longer wants an answer.
    """

    route: str
    caller: bytes
    receiver: bytes
    netuid: int
    timestamp_ms: int
    nonce: bytes
    deadline_ms: int

    def canonical(self, body_digest: bytes) -> bytes:
        """Return the bytes the caller signs (SPEC.md §3.2)."""
        route = self.route.encode("ascii")
        return b"".join((
            REQUEST_DOMAIN,
            struct.pack(">HB", PROTOCOL_VERSION, len(METHOD)), METHOD.encode("ascii"),
            struct.pack(">H", len(route)), route,
            self.caller, self.receiver,
            struct.pack(">IQ", self.netuid, self.timestamp_ms),
            self.nonce,
            struct.pack(">Q", self.deadline_ms),
            body_digest,
        ))


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request header with its body digest and signature, as verified by a miner."""

    header: RequestHeader
    body_digest: bytes
    signature: bytes
    #: The request digest receipts refer to: SHA-256 of the canonical bytes (computed once).
    digest: bytes


def check_route(route: str) -> str:
    """Return ``route`` if it is a valid ``/v1/<name>`` route, else raise MalformedError."""
    if not _ROUTE_RE.fullmatch(route):
        raise MalformedError(f"route {route!r} is not of the form /v1/<name>")
    return route


def sign_request(keypair: Keypair, header: RequestHeader, body: bytes) -> dict[str, str]:
    """Return the HTTP headers of a signed request (SPEC.md §3.3).

    ``header.caller`` must be ``keypair``'s public key.
    """
    return sign_request_with_digest(keypair, header, body)[0]


def sign_request_with_digest(keypair: Keypair, header: RequestHeader,
                             body: bytes) -> tuple[dict[str, str], bytes]:
    """Like :func:`sign_request`, also returning the request digest (hashed once)."""
    if header.caller != keypair.public_key.raw:
        raise ValueError("header.caller must be the signing key's public key")
    check_route(header.route)
    canonical = header.canonical(sha256(body))
    headers = {
        H_VERSION: str(PROTOCOL_VERSION),
        H_CALLER: encode_address(header.caller),
        H_RECEIVER: encode_address(header.receiver),
        H_NETUID: str(header.netuid),
        H_TIMESTAMP: str(header.timestamp_ms),
        H_NONCE: header.nonce.hex(),
        H_DEADLINE: str(header.deadline_ms),
        H_SIGNATURE: keypair.sign(canonical).hex(),
    }
    return headers, sha256(canonical)


def parse_request_headers(route: str, headers: Mapping[str, str]) -> tuple[RequestHeader, bytes]:
    """Parse and syntax-check the signed request headers (cheap; no signature check yet).

    Returns the header and the raw signature.

    Raises:
        MalformedError: a header is malformed, or the version is not supported.
        UnauthenticatedError: a header is missing or empty (including the signature).
    """
    values = {}
    for name in REQUEST_HEADERS:
        value = headers.get(name)
        if value is None or value == "":
            raise UnauthenticatedError(f"header {name} is missing or empty",
                                       code="missing_header")
        values[name] = value
    if values[H_VERSION] != str(PROTOCOL_VERSION):
        raise MalformedError(
            f"protocol version {values[H_VERSION]!r} is not supported (this side speaks "
            f"{PROTOCOL_VERSION})", code="unsupported_version")
    header = RequestHeader(
        route=check_route(route),
        caller=_address_header(H_CALLER, values[H_CALLER]),
        receiver=_address_header(H_RECEIVER, values[H_RECEIVER]),
        netuid=_int_header(H_NETUID, values[H_NETUID], _U32_MAX),
        timestamp_ms=_int_header(H_TIMESTAMP, values[H_TIMESTAMP], _U64_MAX),
        nonce=_hex_header(H_NONCE, values[H_NONCE], NONCE_SIZE),
        deadline_ms=_int_header(H_DEADLINE, values[H_DEADLINE], _U64_MAX),
    )
    return header, _hex_header(H_SIGNATURE, values[H_SIGNATURE], 64)


def verify_request(header: RequestHeader, signature: bytes, body: bytes,
                   receiver: bytes) -> SignedRequest:
    """Verify a parsed request against its exact body bytes and the expected receiver.

    Raises:
        UnauthenticatedError: addressed to another receiver, or the signature is invalid.
    """
    if header.receiver != receiver:
        raise UnauthenticatedError("request is addressed to another receiver",
                                   code="wrong_receiver")
    body_digest = sha256(body)
    canonical = header.canonical(body_digest)
    if not verify(header.caller, canonical, signature):
        raise UnauthenticatedError("signature does not match the request", code="bad_signature")
    return SignedRequest(header, body_digest, signature, sha256(canonical))


def check_deadline(header: RequestHeader, now_ms: int, max_deadline_ms: int) -> None:
    """Reject a deadline that has passed, precedes the timestamp or lies too far ahead.

    Raises:
        DeadlineExceededError: the deadline has already passed (HTTP 504).
        MalformedError: the deadline is not after the timestamp or exceeds the maximum span.
    """
    if header.deadline_ms <= header.timestamp_ms:
        raise MalformedError("deadline must be later than the timestamp", code="bad_deadline")
    if header.deadline_ms - header.timestamp_ms > max_deadline_ms:
        raise MalformedError(f"deadline lies more than {max_deadline_ms} ms after the timestamp",
                             code="bad_deadline")
    if header.deadline_ms <= now_ms:
        raise DeadlineExceededError("the request's deadline has already passed")


def _address_header(name: str, value: str) -> bytes:
    try:
        return decode_address(value)
    except ValueError as exc:
        raise MalformedError(f"header {name}: {exc}", code="bad_header") from None


def _int_header(name: str, value: str, maximum: int) -> int:
    if not _DIGITS_RE.fullmatch(value) or int(value) > maximum:
        raise MalformedError(f"header {name} must be a decimal integer in [0, {maximum}]",
                             code="bad_header")
    return int(value)


def _hex_header(name: str, value: str, size: int) -> bytes:
    if len(value) != 2 * size or not _HEX_RE.fullmatch(value):
        raise MalformedError(f"header {name} must be {2 * size} lower-case hex digits",
                             code="bad_header")
    return bytes.fromhex(value)


# --- receipts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """A miner's signed statement: "I answered request ``request_digest`` with this body".

    Receipts are self-contained: anyone holding one can re-verify it later with :meth:`verify`.
    For a streamed answer, ``body_digest`` is the stream's final running digest (SPEC.md §3.6).
    """

    request_digest: bytes
    status: int
    body_digest: bytes
    miner: bytes
    timestamp_ms: int
    signature: bytes

    @staticmethod
    def canonical(request_digest: bytes, status: int, body_digest: bytes, miner: bytes,
                  timestamp_ms: int) -> bytes:
        """Return the bytes a miner signs for a receipt (SPEC.md §3.5)."""
        return b"".join((RECEIPT_DOMAIN, struct.pack(">H", PROTOCOL_VERSION), request_digest,
                         struct.pack(">H", status), body_digest, miner,
                         struct.pack(">Q", timestamp_ms)))

    @classmethod
    def issue(cls, keypair: Keypair, request_digest: bytes, status: int, body_digest: bytes,
              timestamp_ms: int) -> Receipt:
        """Sign a receipt with the miner's key."""
        miner = keypair.public_key.raw
        message = cls.canonical(request_digest, status, body_digest, miner, timestamp_ms)
        return cls(request_digest, status, body_digest, miner, timestamp_ms,
                   keypair.sign(message))

    @property
    def miner_address(self) -> str:
        """The signing miner's address."""
        return encode_address(self.miner)

    def is_valid(self) -> bool:
        """Return whether the signature is the miner's valid signature over the other fields."""
        if len(self.request_digest) != DIGEST_SIZE or len(self.body_digest) != DIGEST_SIZE:
            return False
        message = self.canonical(self.request_digest, self.status, self.body_digest, self.miner,
                                 self.timestamp_ms)
        return _receipt_signature_valid(self.miner, message, self.signature)

    def verify(self, *, request_digest: bytes, status: int, body_digest: bytes,
               miner: bytes) -> None:
        """Check this receipt answers the given request with the given body from ``miner``.

        Raises:
            ReceiptError: any field differs or the signature is invalid.
        """
        if self.miner != miner:
            raise ReceiptError(f"receipt signed by {encode_address(self.miner)}, "
                               f"expected {encode_address(miner)}")
        if self.request_digest != request_digest:
            raise ReceiptError("receipt refers to another request")
        if self.status != status:
            raise ReceiptError(f"receipt states status {self.status}, answer had {status}")
        if self.body_digest != body_digest:
            raise ReceiptError("receipt does not cover the body received")
        if not self.is_valid():
            raise ReceiptError("receipt signature is invalid")

    def headers(self) -> dict[str, str]:
        """Return the response headers carrying this receipt (SPEC.md §3.5)."""
        return {H_MINER: encode_address(self.miner),
                H_RECEIPT_TIMESTAMP: str(self.timestamp_ms),
                H_RECEIPT_SIGNATURE: self.signature.hex()}

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, request_digest: bytes, status: int,
                     body_digest: bytes) -> Receipt:
        """Rebuild a receipt from response headers (the rest comes from the exchange).

        Raises:
            ReceiptError: a receipt header is missing or malformed.
        """
        try:
            miner = decode_address(headers.get(H_MINER, ""))
            timestamp = _int_header(H_RECEIPT_TIMESTAMP, headers.get(H_RECEIPT_TIMESTAMP, ""),
                                    _U64_MAX)
            signature = _hex_header(H_RECEIPT_SIGNATURE,
                                    headers.get(H_RECEIPT_SIGNATURE, ""), 64)
        except (ValueError, MalformedError) as exc:
            raise ReceiptError(f"answer has no valid receipt: {exc}") from None
        return cls(request_digest, status, body_digest, miner, timestamp, signature)

    def to_bytes(self) -> bytes:
        """Serialise for storage (a msgpack map; SPEC.md §3.5)."""
        return codec.pack({"v": PROTOCOL_VERSION, "request_digest": self.request_digest,
                           "status": self.status, "body_digest": self.body_digest,
                           "miner": self.miner, "timestamp_ms": self.timestamp_ms,
                           "signature": self.signature})

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        """Parse a stored receipt (raises ReceiptError on malformed input; does not verify)."""
        try:
            value = codec.unpack(data)
            version = value.get("v") if isinstance(value, dict) else None
            if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1: not a version
                raise ReceiptError("not a version-1 receipt")
            fields = (value["request_digest"], value["status"], value["body_digest"],
                      value["miner"], value["timestamp_ms"], value["signature"])
        except (KeyError, MalformedError, PayloadTooLargeError) as exc:
            raise ReceiptError(f"malformed receipt: {exc}") from None
        types_ok = [isinstance(f, t) and not isinstance(f, bool)
                    for f, t in zip(fields, (bytes, int, bytes, bytes, int, bytes), strict=True)]
        if not all(types_ok):
            raise ReceiptError("malformed receipt: field of the wrong type")
        return cls(*fields)

    def __post_init__(self) -> None:
        if len(self.miner) != 32:
            raise ReceiptError("receipt miner key must be 32 bytes")
        if not 0 <= self.status <= 0xFFFF or not 0 <= self.timestamp_ms <= _U64_MAX:
            raise ReceiptError("receipt status or timestamp out of range")


# A receipt is typically checked twice in a row (by the client, then by whoever scores or audits
# the answer); caching the verdict on the exact bytes halves that cost and cannot change it.
@functools.lru_cache(maxsize=4096)
def _receipt_signature_valid(miner: bytes, message: bytes, signature: bytes) -> bool:
    return verify(miner, message, signature)


def public_key_of(address: str) -> bytes:
    """Convenience: the raw public key of an address (raises AddressError)."""
    return PublicKey.from_address(address).raw
