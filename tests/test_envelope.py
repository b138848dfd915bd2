"""Signed requests and receipts without I/O (protocol/envelope.py)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec, envelope
from protocol.errors import (
    DeadlineExceededError,
    MalformedError,
    ReceiptError,
    UnauthenticatedError,
)
from protocol.keys import Keypair
from tests.conftest import CALLER_SEED, MINER_SEED, keypair_for

CALLER = Keypair(CALLER_SEED)
MINER = Keypair(MINER_SEED)
OTHER = keypair_for("other")
TS = 1_790_000_000_000
BODY = b"\x81\xa1v\x01"
HEADER = envelope.RequestHeader("/v1/echo", CALLER.public_key.raw, MINER.public_key.raw, 1, TS,
                                bytes(range(16)), TS + 30_000)


def signed_headers(header: envelope.RequestHeader = HEADER, body: bytes = BODY) -> dict[str, str]:
    """The HTTP headers of ``header`` signed by the caller."""
    return envelope.sign_request(CALLER, header, body)


def parse_error(headers: dict[str, str], route: str = "/v1/echo") -> tuple[type[Exception], str]:
    """Return the class and code of the error parse_request_headers raises for ``headers``."""
    with pytest.raises((MalformedError, UnauthenticatedError)) as info:
        envelope.parse_request_headers(route, headers)
    return type(info.value), info.value.code


def test_sign_parse_verify_round_trip() -> None:
    """Signed headers parse back to the same header and verify against the exact body."""
    header, signature = envelope.parse_request_headers("/v1/echo", signed_headers())
    assert header == HEADER
    signed = envelope.verify_request(header, signature, BODY, MINER.public_key.raw)
    assert signed.body_digest == envelope.sha256(BODY)
    assert signed.digest == envelope.sha256(HEADER.canonical(envelope.sha256(BODY)))


def test_header_values_are_canonical_text() -> None:
    """The headers carry decimal numbers, lower-case hex and the two addresses."""
    headers = signed_headers()
    assert {k: v for k, v in headers.items() if k != envelope.H_SIGNATURE} == {
        "Ensemble-Version": "1", "Ensemble-Caller": CALLER.address,
        "Ensemble-Receiver": MINER.address, "Ensemble-Netuid": "1",
        "Ensemble-Timestamp": "1790000000000", "Ensemble-Nonce": "000102030405060708090a0b0c0d0e0f",
        "Ensemble-Deadline": "1790000030000"}
    assert len(headers[envelope.H_SIGNATURE]) == 128


def test_canonical_layout() -> None:
    """The canonical bytes are the domain tag, fixed-width fields and the body digest, in order."""
    digest = envelope.sha256(BODY)
    canonical = HEADER.canonical(digest)
    assert canonical.startswith(b"ensemblenet:request\x00\x00\x01\x04POST\x00\x08/v1/echo")
    assert len(canonical) == 20 + 2 + 1 + 4 + 2 + 8 + 32 + 32 + 4 + 8 + 16 + 8 + 32
    assert canonical.endswith(bytes(range(16)) + (TS + 30_000).to_bytes(8, "big") + digest)


@pytest.mark.parametrize(("name", "value"), [
    ("route", "/v1/echp"), ("caller", OTHER.public_key.raw), ("receiver", OTHER.public_key.raw),
    ("netuid", 2), ("timestamp_ms", TS + 1), ("nonce", bytes(15) + b"\x01"),
    ("deadline_ms", TS + 30_001),
])
def test_every_field_is_signed(name: str, value: Any) -> None:
    """Changing any header field changes the canonical bytes, so the old signature fails."""
    changed = dataclasses.replace(HEADER, **{name: value})
    digest = envelope.sha256(BODY)
    assert changed.canonical(digest) != HEADER.canonical(digest)
    signature = CALLER.sign(HEADER.canonical(digest))
    with pytest.raises(UnauthenticatedError) as info:
        envelope.verify_request(changed, signature, BODY, changed.receiver)
    assert info.value.code == "bad_signature"


def test_body_is_signed() -> None:
    """A different body (even one byte) fails verification with bad_signature."""
    header, signature = envelope.parse_request_headers("/v1/echo", signed_headers())
    with pytest.raises(UnauthenticatedError) as info:
        envelope.verify_request(header, signature, BODY[:-1] + b"\x02", MINER.public_key.raw)
    assert info.value.code == "bad_signature"


def test_wrong_receiver() -> None:
    """A request addressed to another miner is refused with wrong_receiver."""
    header, signature = envelope.parse_request_headers("/v1/echo", signed_headers())
    with pytest.raises(UnauthenticatedError) as info:
        envelope.verify_request(header, signature, BODY, OTHER.public_key.raw)
    assert info.value.code == "wrong_receiver"


def test_signature_by_another_key_is_refused() -> None:
    """A valid signature by someone other than the named caller is bad_signature."""
    signature = OTHER.sign(HEADER.canonical(envelope.sha256(BODY)))
    with pytest.raises(UnauthenticatedError) as info:
        envelope.verify_request(HEADER, signature, BODY, MINER.public_key.raw)
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize("name", envelope.REQUEST_HEADERS)
@pytest.mark.parametrize("value", [None, ""], ids=["absent", "empty"])
def test_missing_or_empty_header(name: str, value: str | None) -> None:
    """Every signed header is required: absent or empty gives 401 missing_header."""
    headers = signed_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    assert parse_error(headers) == (UnauthenticatedError, "missing_header")


@pytest.mark.parametrize("version", ["2", "0", "01", "1.0", "v1", " 1"])
def test_unsupported_version(version: str) -> None:
    """Any version but "1" is 400 unsupported_version (it never switches checks off)."""
    headers = signed_headers() | {envelope.H_VERSION: version}
    assert parse_error(headers) == (MalformedError, "unsupported_version")


@pytest.mark.parametrize(("name", "value"), [
    (envelope.H_NETUID, "01"), (envelope.H_NETUID, "-1"), (envelope.H_NETUID, "+1"),
    (envelope.H_NETUID, "4294967296"), (envelope.H_NETUID, "1\n"), (envelope.H_NETUID, "\u0661"),
    (envelope.H_TIMESTAMP, "18446744073709551616"), (envelope.H_TIMESTAMP, "1e12"),
    (envelope.H_DEADLINE, "1790000030000.0"), (envelope.H_DEADLINE, "0x10"),
    (envelope.H_NONCE, "000102030405060708090A0B0C0D0E0F"), (envelope.H_NONCE, "00" * 15),
    (envelope.H_NONCE, "00" * 15 + "0\n"), (envelope.H_NONCE, "00" * 15 + "0g"),
    (envelope.H_SIGNATURE, "00" * 63), (envelope.H_SIGNATURE, "00" * 63 + " 0"),
    (envelope.H_CALLER, "ens1" + "a" * 58), (envelope.H_CALLER, CALLER.address[:-1]),
    (envelope.H_RECEIVER, "xyz1" + MINER.address[4:]), (envelope.H_RECEIVER, MINER.address + "a"),
])
def test_malformed_header_values(name: str, value: str) -> None:
    """Numbers must be plain decimal in range, hex exact lower-case, addresses valid: else 400."""
    headers = signed_headers() | {name: value}
    assert parse_error(headers) == (MalformedError, "bad_header")


def test_largest_values_parse() -> None:
    """netuid 2^32-1 and timestamps 2^64-1 are within range."""
    headers = signed_headers() | {envelope.H_NETUID: str(2**32 - 1),
                                  envelope.H_TIMESTAMP: str(2**64 - 1)}
    header, _ = envelope.parse_request_headers("/v1/echo", headers)
    assert (header.netuid, header.timestamp_ms) == (2**32 - 1, 2**64 - 1)


def test_upper_case_addresses_are_accepted() -> None:
    """Addresses are case-insensitive (SPEC.md §2.1): an upper-case caller names the same key."""
    headers = signed_headers() | {envelope.H_CALLER: CALLER.address.upper()}
    header, _ = envelope.parse_request_headers("/v1/echo", headers)
    assert header.caller == CALLER.public_key.raw


@pytest.mark.parametrize(("route", "ok"), [
    ("/v1/echo", True), ("/v1/a", True), ("/v1/x" + "y" * 63, True), ("/v1/a.b_c-9", True),
    ("/v1/x" + "y" * 64, False), ("/v1/", False), ("/v1/Echo", False), ("/v1/9a", False),
    ("/v2/echo", False), ("/v1/echo\n", False), ("/v1/echo/x", False), ("v1/echo", False),
])
def test_route_syntax(route: str, ok: bool) -> None:
    """Routes are /v1/ plus a lower-case name of at most 64 characters, nothing around it."""
    if ok:
        assert envelope.check_route(route) == route
    else:
        with pytest.raises(MalformedError, match="is not of the form"):
            envelope.check_route(route)


def test_sign_request_refuses_inconsistent_input() -> None:
    """Signing with a key other than header.caller, or for a bad route, is refused."""
    with pytest.raises(ValueError, match="caller"):
        envelope.sign_request(OTHER, HEADER, BODY)
    with pytest.raises(MalformedError):
        envelope.sign_request(CALLER, dataclasses.replace(HEADER, route="/v1/Bad"), BODY)


@pytest.mark.parametrize(("deadline", "now", "outcome"), [
    (TS + 1, TS, None),
    (TS + 600_000, TS, None),
    (TS + 600_001, TS, "bad_deadline"),
    (TS, TS - 5, "bad_deadline"),
    (TS - 1, TS - 5, "bad_deadline"),
    (TS + 10, TS + 10, "deadline_exceeded"),
    (TS + 10, TS + 11, "deadline_exceeded"),
    (TS + 10, TS + 9, None),
])
def test_check_deadline(deadline: int, now: int, outcome: str | None) -> None:
    """A deadline must follow the timestamp by at most the maximum span and not have passed."""
    header = dataclasses.replace(HEADER, deadline_ms=deadline)
    if outcome is None:
        envelope.check_deadline(header, now, 600_000)
        return
    error = DeadlineExceededError if outcome == "deadline_exceeded" else MalformedError
    with pytest.raises(error) as info:
        envelope.check_deadline(header, now, 600_000)
    assert info.value.code == outcome


# --- receipts ---------------------------------------------------------------------------------

REQUEST_DIGEST = envelope.sha256(b"request")
ANSWER_DIGEST = envelope.sha256(b"answer")
RECEIPT = envelope.Receipt.issue(MINER, REQUEST_DIGEST, 200, ANSWER_DIGEST, TS + 5)


def test_receipt_verifies_against_the_intended_miner() -> None:
    """A receipt verifies for its request, status, body and the miner that signed it."""
    assert RECEIPT.is_valid()
    RECEIPT.verify(request_digest=REQUEST_DIGEST, status=200, body_digest=ANSWER_DIGEST,
                   miner=MINER.public_key.raw)
    assert RECEIPT.miner_address == MINER.address


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"miner": OTHER.public_key.raw}, f"receipt signed by {MINER.address}, expected"),
    ({"request_digest": envelope.sha256(b"x")}, "receipt refers to another request"),
    ({"status": 500}, "receipt states status 200, answer had 500"),
    ({"body_digest": envelope.sha256(b"x")}, "receipt does not cover the body received"),
], ids=["miner", "request", "status", "body"])
def test_receipt_verify_refuses_mismatches(kwargs: dict[str, Any], message: str) -> None:
    """Verifying against another miner, request, status or body raises ReceiptError."""
    expected: dict[str, Any] = {"request_digest": REQUEST_DIGEST, "status": 200,
                                "body_digest": ANSWER_DIGEST, "miner": MINER.public_key.raw}
    with pytest.raises(ReceiptError, match=message):
        RECEIPT.verify(**(expected | kwargs))


@pytest.mark.parametrize(("name", "value"), [
    ("request_digest", envelope.sha256(b"other")),
    ("request_digest", REQUEST_DIGEST[:31]),
    ("status", 201),
    ("body_digest", envelope.sha256(b"other")),
    ("body_digest", ANSWER_DIGEST + b"\x00"),
    ("miner", OTHER.public_key.raw),
    ("timestamp_ms", TS + 6),
    ("signature", bytes([RECEIPT.signature[0] ^ 1]) + RECEIPT.signature[1:]),
    ("signature", RECEIPT.signature[:63]),
    ("signature", b""),
], ids=["request", "request-short", "status", "body", "body-long", "miner", "timestamp",
        "signature-bit", "signature-short", "signature-empty"])
def test_tampered_receipt_field_is_invalid(name: str, value: Any) -> None:
    """Changing any one field of a receipt makes is_valid() false."""
    assert not dataclasses.replace(RECEIPT, **{name: value}).is_valid()


def test_receipt_stored_form_round_trips_and_reverifies() -> None:
    """to_bytes/from_bytes gives an equal receipt that still verifies, in SPEC key order."""
    stored = RECEIPT.to_bytes()
    assert list(codec.unpack(stored)) == ["v", "request_digest", "status", "body_digest", "miner",
                                          "timestamp_ms", "signature"]
    again = envelope.Receipt.from_bytes(stored)
    assert again == RECEIPT
    again.verify(request_digest=REQUEST_DIGEST, status=200, body_digest=ANSWER_DIGEST,
                 miner=MINER.public_key.raw)


def test_receipt_headers_round_trip() -> None:
    """The three receipt headers rebuild the same receipt."""
    headers = RECEIPT.headers()
    assert headers == {"Ensemble-Miner": MINER.address, "Ensemble-Receipt-Timestamp": str(TS + 5),
                       "Ensemble-Receipt-Signature": RECEIPT.signature.hex()}
    again = envelope.Receipt.from_headers(headers, request_digest=REQUEST_DIGEST, status=200,
                                          body_digest=ANSWER_DIGEST)
    assert again == RECEIPT


@pytest.mark.parametrize("change", [
    {"Ensemble-Miner": None}, {"Ensemble-Receipt-Timestamp": None},
    {"Ensemble-Receipt-Signature": None}, {"Ensemble-Miner": "ens1nope"},
    {"Ensemble-Receipt-Timestamp": "-5"}, {"Ensemble-Receipt-Signature": "ab" * 63},
], ids=["no-miner", "no-timestamp", "no-signature", "bad-miner", "bad-timestamp", "short-sig"])
def test_receipt_from_bad_headers(change: dict[str, str | None]) -> None:
    """Missing or malformed receipt headers raise ReceiptError."""
    headers = {k: v for k, v in (RECEIPT.headers() | change).items() if v is not None}
    with pytest.raises(ReceiptError, match="answer has no valid receipt"):
        envelope.Receipt.from_headers(headers, request_digest=REQUEST_DIGEST, status=200,
                                      body_digest=ANSWER_DIGEST)


def _stored(**change: Any) -> bytes:
    value = codec.unpack(RECEIPT.to_bytes()) | change
    return codec.pack({k: v for k, v in value.items() if v is not ...})


@pytest.mark.parametrize("data", [
    b"\xc1", codec.pack([1]), _stored(v=2), _stored(v=True), _stored(status=...),
    _stored(status="200"), _stored(status=True), _stored(miner=b"\x00" * 31),
    _stored(status=70_000), _stored(timestamp_ms=-1), _stored(signature="x"),
    b"\xc4\x00" * ((1 << 19) + 1),
], ids=["garbage", "not-map", "v2", "v-bool", "missing", "status-str", "status-bool",
        "miner-short", "status-range", "timestamp-negative", "signature-str", "oversized"])
def test_receipt_from_bad_bytes(data: bytes) -> None:
    """Malformed, oversized or wrongly typed stored receipts raise ReceiptError, nothing else."""
    with pytest.raises(ReceiptError):
        envelope.Receipt.from_bytes(data)


@given(st.binary(max_size=300))
def test_receipt_from_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes give a receipt or ReceiptError, never another exception."""
    with contextlib.suppress(ReceiptError):
        envelope.Receipt.from_bytes(data)
