"""Canonical msgpack for ledger values: strict decoding, typed field readers, tagged hashes.

Every ledger value (transaction, block header, state, genesis) is a msgpack *array* with a fixed
field order, encoded by :func:`protocol.codec.pack`: minimal-size integers, ``bin`` for bytes,
``str`` for text, float64 for floats, no maps, no extension types. Decoding is strict: a value is
accepted only if re-encoding it gives the very same bytes, so every accepted value has exactly one
encoding and hashes/signatures over encodings are unambiguous.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from protocol.codec import Limits, pack, unpack
from protocol.errors import WireError
from protocol.ledger.errors import DecodeError

__all__ = [
    "U16_MAX",
    "U32_MAX",
    "U64_MAX",
    "decode_canonical",
    "encode",
    "read_bool",
    "read_bytes",
    "read_float",
    "read_int",
    "read_list",
    "read_str",
    "read_struct",
    "tagged_hash",
]

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def encode(value: list[Any]) -> bytes:
    """Return the canonical msgpack encoding of a ledger array."""
    return pack(value)


def decode_canonical(data: bytes, limits: Limits) -> list[Any]:
    """Decode ``data`` as one canonical msgpack array.

    Raises:
        DecodeError: not msgpack, over ``limits``, not an array, or not canonical (re-encoding
            the decoded value gives other bytes: non-minimal ints, float32, str/bin confusion).
    """
    try:
        value = unpack(data, limits)
    except WireError as exc:
        raise DecodeError(exc.message) from None
    if not isinstance(value, list):
        raise DecodeError("expected a msgpack array at the top level")
    if pack(value) != data:
        raise DecodeError("not the canonical encoding (re-encoding gives other bytes)")
    return value


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """Return ``SHA-256(tag || data)``, the domain-separated hash every ledger digest uses."""
    return hashlib.sha256(tag + data).digest()


# --- typed readers: each raises DecodeError naming the field --------------------------------


def read_struct(value: Any, size: int, what: str) -> list[Any]:
    """Return ``value`` if it is an array of exactly ``size`` elements."""
    if not isinstance(value, list) or len(value) != size:
        raise DecodeError(f"{what}: expected an array of {size} fields")
    return value


def read_list(value: Any, max_len: int, what: str) -> list[Any]:
    """Return ``value`` if it is an array of at most ``max_len`` elements."""
    if not isinstance(value, list) or len(value) > max_len:
        raise DecodeError(f"{what}: expected an array of at most {max_len} elements")
    return value


def read_int(value: Any, low: int, high: int, what: str) -> int:
    """Return ``value`` if it is an integer (not a bool) in ``[low, high]``."""
    if type(value) is not int or not low <= value <= high:
        raise DecodeError(f"{what}: expected an integer in [{low}, {high}]")
    return value


def read_bytes(value: Any, low: int, high: int, what: str) -> bytes:
    """Return ``value`` if it is binary of ``low`` to ``high`` bytes."""
    if type(value) is not bytes or not low <= len(value) <= high:
        size = str(low) if low == high else f"{low} to {high}"
        raise DecodeError(f"{what}: expected {size} bytes")
    return value


def read_str(value: Any, low: int, high: int, what: str) -> str:
    """Return ``value`` if it is text of ``low`` to ``high`` characters."""
    if type(value) is not str or not low <= len(value) <= high:
        raise DecodeError(f"{what}: expected text of {low} to {high} characters")
    return value


def read_bool(value: Any, what: str) -> bool:
    """Return ``value`` if it is a boolean."""
    if type(value) is not bool:
        raise DecodeError(f"{what}: expected a boolean")
    return value


def read_float(value: Any, what: str) -> float:
    """Return ``value`` if it is a finite float64."""
    if type(value) is not float or not math.isfinite(value):
        raise DecodeError(f"{what}: expected a finite float")
    return value
