"""msgpack with explicit limits (protocol/codec.py): round trips, every limit, a fuzz invariant."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import MalformedError, PayloadTooLargeError

#: Plain values as the codec returns them: maps with text keys, lists, and msgpack scalars.
plain_scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
                 | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=40))
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30)


def _array_header(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n)


def _map_header(n: int) -> bytes:
    return b"\xdf" + struct.pack(">I", n)


@given(plain_values)
def test_plain_values_round_trip(value: Any) -> None:
    """Any plain value (text-keyed maps, lists, scalars) decodes to an equal value."""
    assert codec.unpack(codec.pack(value)) == value


@given(plain_values)
def test_pack_is_deterministic(value: Any) -> None:
    """Equal values give equal bytes."""
    assert codec.pack(value) == codec.pack(codec.unpack(codec.pack(value)))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_our_errors(data: bytes) -> None:
    """Arbitrary bytes either decode or raise MalformedError/PayloadTooLargeError, nothing else."""
    with contextlib.suppress(MalformedError, PayloadTooLargeError):
        codec.unpack(data)


@given(plain_values, st.data())
def test_mutated_documents_decode_or_raise_our_errors(value: Any, data: st.DataObject) -> None:
    """A valid document with one byte replaced decodes or raises one of our two decode errors."""
    raw = bytearray(codec.pack(value))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MalformedError, PayloadTooLargeError):
        codec.unpack(bytes(raw))


@pytest.mark.parametrize("value", ["\ud800", {"text": "ok \udfff"}, ["\ud83d"]])
def test_lone_surrogates_are_a_typed_error(value: Any) -> None:
    """A string with no UTF-8 form (a lone surrogate, which JSON allows) is MalformedError."""
    with pytest.raises(MalformedError, match="lone surrogate"):
        codec.pack(value)


def test_str_and_bin_types_are_distinct() -> None:
    """Text encodes as msgpack str and bytes as bin; both come back as their own type."""
    assert codec.pack("a") == b"\xa1a"
    assert codec.pack(b"a") == b"\xc4\x01a"
    assert codec.unpack(b"\xa1a") == "a"
    assert codec.unpack(b"\xc4\x01a") == b"a"


def test_body_limit() -> None:
    """A document of max_body bytes decodes; one byte more is 413 before decoding."""
    limits = codec.Limits(max_body=10)
    exact = codec.pack(b"12345678")  # c4 08 + 8 bytes = 10
    assert len(exact) == 10
    assert codec.unpack(exact, limits) == b"12345678"
    with pytest.raises(PayloadTooLargeError, match="body is 11 bytes, limit 10"):
        codec.unpack(codec.pack(b"123456789"), limits)


def test_default_body_limit_is_one_mebibyte() -> None:
    """The default body cap is 1 MiB: a 1 MiB + 1 byte document is refused with 413."""
    assert codec.DEFAULT_LIMITS.max_body == 1 << 20
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(b"\xc0" * ((1 << 20) + 1))


@pytest.mark.parametrize(("value", "limits", "ok"), [
    ("x" * 8, codec.Limits(max_str=8), True),
    ("x" * 9, codec.Limits(max_str=8), False),
    (b"x" * 8, codec.Limits(max_bin=8), True),
    (b"x" * 9, codec.Limits(max_bin=8), False),
    ([0] * 8, codec.Limits(max_array=8), True),
    ([0] * 9, codec.Limits(max_array=8), False),
    ({str(i): 0 for i in range(8)}, codec.Limits(max_map=8), True),
    ({str(i): 0 for i in range(9)}, codec.Limits(max_map=8), False),
], ids=["str-at", "str-over", "bin-at", "bin-over", "array-at", "array-over", "map-at",
        "map-over"])
def test_length_limits(value: Any, limits: codec.Limits, ok: bool) -> None:
    """Strings, binaries, arrays and maps at their cap decode; one element more is 413."""
    if ok:
        assert codec.unpack(codec.pack(value), limits) == value
    else:
        with pytest.raises(PayloadTooLargeError, match="exceeds max"):
            codec.unpack(codec.pack(value), limits)


def test_default_container_limits() -> None:
    """Defaults: 65 536 array elements and 4 096 map pairs pass; one more of either is 413."""
    assert codec.unpack(_array_header(1 << 16) + b"\xc0" * (1 << 16)) == [None] * (1 << 16)
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(_array_header((1 << 16) + 1) + b"\xc0" * ((1 << 16) + 1))
    pairs = b"".join(codec.pack(f"k{i}") + b"\xc0" for i in range(4097))
    assert len(codec.unpack(_map_header(4096) + pairs[: -len(codec.pack("k4096")) - 1])) == 4096
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(_map_header(4097) + pairs)


def test_claimed_length_is_checked_before_allocation() -> None:
    """A 5-byte document claiming 2^32-1 elements is 413; one claiming a 4 GiB string is 400."""
    with pytest.raises(PayloadTooLargeError, match="4294967295 exceeds max_array_len"):
        codec.unpack(_array_header(0xFFFFFFFF))
    with pytest.raises(MalformedError, match="incomplete input"):
        codec.unpack(b"\xdb\xff\xff\xff\xff")  # str32 claiming 4 GiB: truncated, not allocated


def test_nesting_depth_limit() -> None:
    """Nesting of exactly max_depth containers decodes; one level deeper is 413."""
    limits = codec.Limits(max_depth=4)
    assert codec.unpack(b"\x91" * 4 + b"\x01", limits) == [[[[1]]]]
    with pytest.raises(PayloadTooLargeError, match="nesting deeper than 4"):
        codec.unpack(b"\x91" * 5 + b"\x01", limits)
    assert codec.unpack(b"\x81\xa1a" * 4 + b"\x01", limits) == {"a": {"a": {"a": {"a": 1}}}}
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(b"\x81\xa1a" * 5 + b"\x01", limits)


def test_default_depth_is_sixteen() -> None:
    """Sixteen nested arrays decode with the defaults; seventeen are 413."""
    assert codec.unpack(b"\x91" * 16 + b"\xc0") is not None
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(b"\x91" * 17 + b"\xc0")


def test_one_mebibyte_of_nested_arrays() -> None:
    """A 1 MiB body of 0x91 bytes (a million nested one-element arrays) is 413, not a crash."""
    with pytest.raises(PayloadTooLargeError):
        codec.unpack(b"\x91" * (1 << 20))


@pytest.mark.parametrize("data", [
    b"\xd4\x05\x00",              # fixext1, application type 5
    b"\xc7\x00\x05",              # ext8 of length 0 (passes max_ext_len=0, reaches the hook)
    b"\xd6\xff\x00\x00\x00\x00",  # the timestamp extension (type -1)
    b"\xc7\x00\xff",              # an empty timestamp extension
    b"\x91\xd4\x05\x00",          # an extension inside an array
], ids=["fixext1", "ext8-empty", "timestamp", "timestamp-empty", "nested"])
def test_extension_types_are_rejected(data: bytes) -> None:
    """Every msgpack extension type, timestamps included, is refused with 400."""
    with pytest.raises(MalformedError) as info:
        codec.unpack(data)
    assert type(info.value) is MalformedError


@pytest.mark.parametrize("data", [
    b"\x81\x01\x01",              # int key
    b"\x81\xc4\x01k\x01",         # bin (bytes) key
    b"\x81\xc0\x01",              # nil key
    b"\x81\x81\xa1a\x01\x01",     # map key
], ids=["int", "bytes", "nil", "map"])
def test_map_keys_must_be_strings(data: bytes) -> None:
    """A map key that is not a string is refused with 400 (SPEC.md §1)."""
    with pytest.raises(MalformedError) as info:
        codec.unpack(data)
    assert type(info.value) is MalformedError


@pytest.mark.parametrize(("data", "message"), [
    (b"", "invalid msgpack"),
    (b"\x92\x01", "invalid msgpack"),
    (b"\xc1", "invalid msgpack"),
    (b"\x01\x02", "trailing bytes"),
    (b"\xa2\xff\xfe", "invalid msgpack"),
], ids=["empty", "truncated", "reserved-byte", "trailing", "bad-utf8"])
def test_garbage_is_malformed(data: bytes, message: str) -> None:
    """Empty, truncated, reserved, trailing and non-UTF-8 input is 400 with a reason."""
    with pytest.raises(MalformedError, match=message) as info:
        codec.unpack(data)
    assert type(info.value) is MalformedError


def test_pack_refuses_values_msgpack_cannot_carry() -> None:
    """Packing a value outside the plain types fails loudly instead of inventing an encoding."""
    with pytest.raises(TypeError):
        codec.pack({1, 2})


def test_unpack_agrees_with_msgpack_on_floats() -> None:
    """float32 and float64 decode to Python floats with msgpack's own values."""
    f32 = b"\xca" + struct.pack(">f", 1.5)
    assert codec.unpack(f32) == 1.5
    assert codec.unpack(codec.pack(0.1)) == msgpack.unpackb(msgpack.packb(0.1))
