"""Typed, versioned messages (protocol/schema.py): every field checked, errors name the path."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miners.echo import EchoRequest
from protocol import codec
from protocol.errors import MalformedError, PayloadTooLargeError
from protocol.schema import Message, bounds


@dataclass(frozen=True, slots=True)
class Turn(Message):
    """One chat turn."""

    VERSION: ClassVar[int] = 1
    role: Literal["user", "assistant"]
    content: str = field(metadata=bounds(min_len=1, max_len=10))


@dataclass(frozen=True, slots=True)
class Chat(Message):
    """A message using every supported field type."""

    VERSION: ClassVar[int] = 2
    messages: list[Turn] = field(metadata=bounds(min_len=1, max_len=4))
    temperature: float = field(default=1.0, metadata=bounds(min=0, max=2))
    max_tokens: int = field(default=16, metadata=bounds(min=1, max=4096))
    stop: list[str] | None = None
    tags: dict[str, int] = field(default_factory=dict, metadata=bounds(max_len=2))
    blob: bytes = field(default=b"", metadata=bounds(max_len=4))
    stream: bool = False
    mode: Literal[1, 2] = 1
    seed: float | None = None


@dataclass(frozen=True, slots=True)
class Unsupported(Message):
    """A message with a field type the schema cannot check."""

    VERSION: ClassVar[int] = 1
    items: set[int]


def wire(**fields: Any) -> dict[str, Any]:
    """A valid Chat map, version first, with ``fields`` replaced (``...`` removes a field)."""
    base: dict[str, Any] = {"v": 2, "messages": [{"v": 1, "role": "user", "content": "hi"}]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def turn(role: Any = "user", content: Any = "hi", **extra: Any) -> dict[str, Any]:
    """A Turn map."""
    return {"v": 1, "role": role, "content": content, **extra}


def rejected(value: Any) -> str:
    """Return the MalformedError message ``Chat.from_wire(value)`` raises."""
    with pytest.raises(MalformedError) as info:
        Chat.from_wire(value)
    assert type(info.value) is MalformedError
    return info.value.message


FULL = Chat(messages=[Turn("user", "hi"), Turn("assistant", "hello")], temperature=0.5,
            max_tokens=7, stop=["\n"], tags={"a": 1}, blob=b"\x00\xff", stream=True, mode=2,
            seed=3.0)


def test_round_trip_of_every_field_type() -> None:
    """A message using every field type decodes to an equal message."""
    assert Chat.decode(FULL.encode()) == FULL


def test_wire_map_is_version_first_in_declaration_order() -> None:
    """The map starts with "v", then fields in declaration order, nested messages included."""
    plain = FULL.to_wire()
    assert list(plain) == ["v", "messages", "temperature", "max_tokens", "stop", "tags", "blob",
                           "stream", "mode", "seed"]
    assert plain["v"] == 2
    assert plain["messages"][0] == {"v": 1, "role": "user", "content": "hi"}


def test_equal_messages_give_equal_bytes() -> None:
    """Encoding is canonical: a decoded-then-encoded message has the same bytes."""
    data = FULL.encode()
    assert Chat.decode(data).encode() == data


def test_defaults_fill_omitted_optional_fields() -> None:
    """Optional fields may be omitted and take their declared defaults."""
    assert Chat.from_wire(wire()) == Chat(messages=[Turn("user", "hi")])


def test_echo_request_golden_bytes() -> None:
    """EchoRequest(text="hello") encodes to the SPEC.md §3.10 body."""
    assert EchoRequest(text="hello").encode().hex() == (
        "84a17601a474657874a568656c6c6fa864656c61795f6d7300a672657065617401")


@pytest.mark.parametrize(("value", "message"), [
    (wire(messages=[turn(), turn(content=5)]), "messages[1].content: expected string, got integer"),
    (wire(messages=[turn(), turn(), turn(role="system")]),
     "messages[2].role: must be one of ['user', 'assistant'], got 'system'"),
    (wire(messages=["hi"]), "messages[0]: expected a map, got string"),
    (wire(messages={"0": turn()}), "messages: expected an array, got map"),
    (wire(stop=[1]), "stop[0]: expected string, got integer"),
    (wire(tags={"a": "x"}), "tags.a: expected integer, got string"),
    (wire(blob="text"), "blob: expected binary, got string"),
    (wire(temperature="1"), "temperature: expected number, got string"),
    (wire(seed=[1.0]), "seed: expected number, got array"),
    (wire(stream=None), "stream: expected boolean, got nil"),
], ids=["nested-list-index", "literal", "nested-not-map", "list-not-array", "optional-list",
        "dict-value", "bytes", "float", "optional-float", "bool-nil"])
def test_wrong_type_names_the_field_path(value: dict[str, Any], message: str) -> None:
    """A wrongly typed field is a MalformedError whose message starts with its full path."""
    assert rejected(value) == message


def test_top_level_must_be_a_map() -> None:
    """A body that is not a map is refused, naming the body."""
    assert rejected([1, 2]) == "body: expected a map, got array"


@pytest.mark.parametrize(("value", "message"), [
    (wire(messages=...), "messages: required field is missing"),
    (wire(messages=[{"v": 1, "role": "user"}]), "messages[0].content: required field is missing"),
], ids=["top", "nested"])
def test_missing_required_field(value: dict[str, Any], message: str) -> None:
    """A missing required field is named, at any depth."""
    assert rejected(value) == message


@pytest.mark.parametrize(("value", "message"), [
    (wire(extra=1), "extra: unknown field"),
    (wire(messages=[turn(name="x")]), "messages[0].name: unknown field"),
], ids=["top", "nested"])
def test_unknown_field(value: dict[str, Any], message: str) -> None:
    """An unknown key is refused, at any depth."""
    assert rejected(value) == message


@pytest.mark.parametrize(("version", "shown"), [
    (1, "1"), (3, "3"), (True, "True"), (2.0, "2.0"), ("2", "'2'"), (..., "None"),
], ids=["older", "newer", "bool", "float", "text", "missing"])
def test_wrong_version(version: Any, shown: str) -> None:
    """Only the integer VERSION is accepted: not another number, a bool, a float or text."""
    assert rejected(wire(v=version)) == (
        f"v: unsupported message version {shown}, this receiver speaks 2")


def test_wrong_nested_version() -> None:
    """A nested message's version is checked against its own class."""
    assert rejected(wire(messages=[{"v": 2, "role": "user", "content": "hi"}])) == (
        "messages[0].v: unsupported message version 2, this receiver speaks 1")


@pytest.mark.parametrize(("value", "message"), [
    (wire(max_tokens=True), "max_tokens: expected integer, got boolean"),
    (wire(max_tokens=1.0), "max_tokens: expected integer, got float"),
    (wire(temperature=False), "temperature: expected number, got boolean"),
    (wire(stream=1), "stream: expected boolean, got integer"),
    (wire(mode=True), "mode: must be one of [1, 2], got True"),
    (wire(mode=1.0), "mode: must be one of [1, 2], got 1.0"),
], ids=["int-bool", "int-float", "float-bool", "bool-int", "literal-bool", "literal-float"])
def test_bool_and_int_are_distinct(value: dict[str, Any], message: str) -> None:
    """An integer field refuses booleans and floats; a boolean field refuses integers."""
    assert rejected(value) == message


def test_float_field_accepts_an_integer() -> None:
    """A float field accepts an integer and stores it as a float."""
    decoded = Chat.from_wire(wire(temperature=1))
    assert decoded.temperature == 1.0
    assert type(decoded.temperature) is float


@pytest.mark.parametrize("value", [
    wire(temperature=math.nan), wire(seed=math.nan), wire(max_tokens=5, temperature=-math.nan),
], ids=["bounded", "unbounded", "negative-nan"])
def test_nan_is_refused(value: dict[str, Any]) -> None:
    """NaN is refused in every number field, bounded or not."""
    assert rejected(value).endswith(": NaN is not allowed")


@pytest.mark.parametrize(("value", "message"), [
    (wire(max_tokens=0), "max_tokens: 0 is below the minimum 1"),
    (wire(max_tokens=4097), "max_tokens: 4097 exceeds the maximum 4096"),
    (wire(temperature=-0.5), "temperature: -0.5 is below the minimum 0"),
    (wire(temperature=math.inf), "temperature: inf exceeds the maximum 2"),
    (wire(messages=[]), "messages: length 0 is below the minimum 1"),
    (wire(messages=[turn()] * 5), "messages: length 5 exceeds the maximum 4"),
    (wire(messages=[turn(content="")]), "messages[0].content: length 0 is below the minimum 1"),
    (wire(messages=[turn(content="x" * 11)]),
     "messages[0].content: length 11 exceeds the maximum 10"),
    (wire(blob=b"12345"), "blob: length 5 exceeds the maximum 4"),
    (wire(tags={"a": 1, "b": 2, "c": 3}), "tags: length 3 exceeds the maximum 2"),
], ids=["int-min", "int-max", "float-min", "float-inf", "list-min", "list-max", "str-min",
        "str-max", "bytes-max", "dict-max"])
def test_bounds(value: dict[str, Any], message: str) -> None:
    """Values and lengths outside the declared bounds are refused, naming the field."""
    assert rejected(value) == message


def test_bounds_are_inclusive() -> None:
    """Values exactly at their bounds are accepted."""
    decoded = Chat.from_wire(wire(max_tokens=4096, temperature=0, messages=[turn()] * 4,
                                  blob=b"1234"))
    assert (decoded.max_tokens, decoded.temperature, len(decoded.messages), decoded.blob) == (
        4096, 0.0, 4, b"1234")


def test_decode_applies_codec_limits() -> None:
    """decode() applies the codec limits it is given (413 before any field check)."""
    with pytest.raises(PayloadTooLargeError):
        Chat.decode(FULL.encode(), codec.Limits(max_array=1))


def test_decode_of_garbage_is_malformed() -> None:
    """decode() of bytes that are not msgpack is a MalformedError."""
    with pytest.raises(MalformedError):
        Chat.decode(b"\xc1")


def test_unsupported_field_type_fails_at_first_use() -> None:
    """A message class with an uncheckable field type is a programming error (TypeError)."""
    with pytest.raises(TypeError, match="unsupported message field type"):
        Unsupported.from_wire({"v": 1, "items": [1]})


_FIELD_NAMES = ["v", "messages", "temperature", "max_tokens", "stop", "tags", "blob", "stream",
                "mode", "seed", "extra"]
_scalars = (st.none() | st.booleans() | st.integers(-5, 5000) | st.floats() | st.text(max_size=12)
            | st.binary(max_size=6) | st.sampled_from([1, 2, "user", "assistant"]))
_plain = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["v", "role", "content", "x"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.sampled_from(_FIELD_NAMES), _plain, max_size=8))
def test_arbitrary_maps_decode_or_raise_malformed(value: dict[str, Any]) -> None:
    """Any decoded map either validates into a Chat or raises MalformedError, nothing else."""
    try:
        decoded = Chat.from_wire(value)
    except MalformedError:
        return
    assert Chat.from_wire(decoded.to_wire()) == decoded


@given(st.binary(max_size=120))
def test_arbitrary_bytes_decode_or_raise_our_errors(data: bytes) -> None:
    """Any bytes decode into a Chat or raise MalformedError / PayloadTooLargeError."""
    with contextlib.suppress(MalformedError, PayloadTooLargeError):
        Chat.decode(data)
