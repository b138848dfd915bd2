"""Typed, versioned wire messages: frozen dataclasses encoded as msgpack maps.

A message class declares its fields with type hints and optional bounds::

    @dataclass(frozen=True, slots=True)
    class Echo(Message):
        VERSION: ClassVar[int] = 1
        text: str = field(metadata=bounds(max_len=4096))

Encoding writes a map ``{"v": VERSION, <field>: <value>, ...}`` in declaration order, so equal
messages give equal bytes. Decoding checks every field before anything uses it: the version,
unknown or missing keys, types (``int`` never accepts ``bool``), lengths and ranges. Errors are
:class:`MalformedError` naming the offending field path (``messages[2].role``).

Supported field types: ``str``, ``bytes``, ``int``, ``float`` (accepts ints), ``bool``,
``list[T]``, ``dict[str, T]``, ``T | None``, ``Literal[...]`` and nested ``Message`` classes.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from protocol import codec
from protocol.errors import MalformedError

VERSION_KEY = "v"

M = TypeVar("M", bound="Message")
_Check = Callable[[Any, str], Any]


def bounds(*, min: float | None = None, max: float | None = None,
           min_len: int | None = None, max_len: int | None = None) -> dict[str, Any]:
    """Return dataclass field metadata declaring value or length bounds for a field."""
    return {"min": min, "max": max, "min_len": min_len, "max_len": max_len}


class Message:
    """Base of every wire message. Subclasses are frozen dataclasses with a ``VERSION``."""

    VERSION: ClassVar[int] = 1

    def to_wire(self) -> dict[str, Any]:
        """Return the plain (msgpack-ready) map of this message, version first."""
        to_plain = _ENCODERS.get(type(self))
        if to_plain is None:
            to_plain = _ENCODERS[type(self)] = _build_encoder(type(self))
        return to_plain(self)

    def encode(self) -> bytes:
        """Return the canonical msgpack bytes of this message."""
        return codec.pack(self.to_wire())

    @classmethod
    def decode(cls: type[M], data: bytes, limits: codec.Limits = codec.DEFAULT_LIMITS) -> M:
        """Decode and validate untrusted bytes into this message type.

        Raises:
            PayloadTooLargeError: a limit was exceeded.
            MalformedError: the bytes are not a valid message of this type and version.
        """
        return cls.from_wire(codec.unpack(data, limits))

    @classmethod
    def from_wire(cls: type[M], value: Any, path: str = "") -> M:
        """Validate a decoded plain value into this message type (see :meth:`decode`)."""
        return _compiled(cls)(value, path)  # type: ignore[no-any-return]


# Types msgpack encodes as they are: most fields hold one, and need no conversion.
_PLAIN_TYPES = frozenset((str, bytes, int, float, bool, type(None)))
_ENCODERS: dict[type[Message], Callable[[Any], dict[str, Any]]] = {}


def _build_encoder(cls: type[Message]) -> Callable[[Any], dict[str, Any]]:
    """Build the function turning a ``cls`` instance into its plain map (once per class).

    Messages sit on every request's path; reading the field names once, instead of calling
    ``dataclasses.fields`` per message, halves the cost of encoding a small one.
    """
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    version = cls.VERSION

    def to_plain(message: Any) -> dict[str, Any]:
        out: dict[str, Any] = {VERSION_KEY: version}
        for name in names:
            value = getattr(message, name)
            out[name] = value if type(value) in _PLAIN_TYPES else _to_plain(value)
        return out

    return to_plain


def _to_plain(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_wire()
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


_VALIDATORS: dict[type[Message], _Check] = {}


def _compiled(cls: type[Message]) -> _Check:
    """Return (building once per class) the validator turning a plain map into ``cls``."""
    check = _VALIDATORS.get(cls)
    if check is None:
        check = _VALIDATORS[cls] = _build(cls)
    return check


def _build(cls: type[Message]) -> _Check:
    """Build the validator of ``cls`` from its dataclass fields and type hints."""
    hints = typing.get_type_hints(cls)
    specs = tuple(
        (f.name, _checker(hints[f.name], f.metadata),
         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    allowed = frozenset(name for name, _, _ in specs) | {VERSION_KEY}
    version = cls.VERSION

    def check(value: Any, path: str) -> Message:
        if not isinstance(value, dict):
            raise MalformedError(f"{path or 'body'}: expected a map, got {_kind(value)}")
        got_version = value.get(VERSION_KEY)
        # type() is int: neither a boolean (True == 1) nor a float (1.0 == 1) is a version.
        if type(got_version) is not int or got_version != version:
            raise MalformedError(
                f"{_join(path, VERSION_KEY)}: unsupported message version {got_version!r}, "
                f"this receiver speaks {version}")
        if not value.keys() <= allowed:
            unknown = next(k for k in value if k not in allowed)
            raise MalformedError(f"{_join(path, unknown)}: unknown field")
        kwargs = {}
        for name, field_check, required in specs:
            if name in value:
                kwargs[name] = field_check(value[name], f"{path}.{name}" if path else name)
            elif required:
                raise MalformedError(f"{_join(path, name)}: required field is missing")
        return cls(**kwargs)

    return check


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value: Any) -> str:
    names = {dict: "map", list: "array", str: "string", bytes: "binary", bool: "boolean",
             int: "integer", float: "float", type(None): "nil"}
    return names.get(type(value), type(value).__name__)


def _checker(tp: Any, meta: Mapping[str, Any]) -> _Check:
    """Return a function validating a plain value against type ``tp`` and bounds ``meta``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_checker(args, meta)
    if origin is typing.Literal:
        return _literal_checker(args)
    if origin is list:
        return _list_checker(_checker(args[0], {}), meta)
    if origin is dict:
        return _dict_checker(_checker(args[1], {}), meta)
    if isinstance(tp, type) and issubclass(tp, Message):
        return _compiled(tp)
    if tp in (str, bytes, int, float, bool):
        return _scalar_checker(tp, meta)
    raise TypeError(f"unsupported message field type {tp!r}")


def _union_checker(args: tuple[Any, ...], meta: Mapping[str, Any]) -> _Check:
    non_none = [a for a in args if a is not type(None)]
    if len(non_none) != 1:
        raise TypeError("only Optional[T] unions are supported in messages")
    inner = _checker(non_none[0], meta)
    return lambda value, path: None if value is None else inner(value, path)


def _literal_checker(allowed: tuple[Any, ...]) -> _Check:
    def check(value: Any, path: str) -> Any:
        # Compare types too: 1.0 == 1 and True == 1, yet neither is the literal integer 1.
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise MalformedError(f"{path}: must be one of {list(allowed)!r}, got {value!r}")
        return value
    return check


def _list_checker(item: _Check, meta: Mapping[str, Any]) -> _Check:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise MalformedError(f"{path}: expected an array, got {_kind(value)}")
        _check_len(len(value), meta, path)
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return check


def _dict_checker(item: _Check, meta: Mapping[str, Any]) -> _Check:
    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise MalformedError(f"{path}: expected a map, got {_kind(value)}")
        _check_len(len(value), meta, path)
        return {k: item(v, f"{path}.{k}") for k, v in value.items()}
    return check


_SCALAR_NAMES = {str: "string", bytes: "binary", int: "integer", float: "number", bool: "boolean"}


def _scalar_checker(tp: type, meta: Mapping[str, Any]) -> _Check:
    """A checker for one scalar type, specialised once so the per-value path stays short."""
    expected = _SCALAR_NAMES[tp]

    def wrong(value: Any, path: str) -> MalformedError:
        return MalformedError(f"{path}: expected {expected}, got {_kind(value)}")

    if tp is str or tp is bytes:
        def check_sized(value: Any, path: str) -> Any:
            if not isinstance(value, tp):
                raise wrong(value, path)
            _check_len(len(value), meta, path)
            return value
        return check_sized
    if tp is bool:
        def check_bool(value: Any, path: str) -> Any:
            if not isinstance(value, bool):
                raise wrong(value, path)
            return value
        return check_bool
    # A float field also takes integers: encoders in other languages write 2.0 as 2.
    accepted: tuple[type, ...] = (int, float) if tp is float else (tp,)

    def check_number(value: Any, path: str) -> Any:
        ok = isinstance(value, accepted) and not isinstance(value, bool)  # True is an int
        if not ok:
            raise wrong(value, path)
        number = float(value) if tp is float else value
        _check_range(number, meta, path)
        return number
    return check_number


def _check_len(n: int, meta: Mapping[str, Any], path: str) -> None:
    lo, hi = meta.get("min_len"), meta.get("max_len")
    if lo is not None and n < lo:
        raise MalformedError(f"{path}: length {n} is below the minimum {lo}")
    if hi is not None and n > hi:
        raise MalformedError(f"{path}: length {n} exceeds the maximum {hi}")


def _check_range(x: float, meta: Mapping[str, Any], path: str) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if math.isnan(x):  # NaN compares false with every bound: reject it explicitly
        raise MalformedError(f"{path}: NaN is not allowed")
    if lo is not None and x < lo:
        raise MalformedError(f"{path}: {x} is below the minimum {lo}")
    if hi is not None and x > hi:
        raise MalformedError(f"{path}: {x} exceeds the maximum {hi}")
