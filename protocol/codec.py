"""msgpack encoding with explicit limits, enforced by the decoder before it allocates.

Decoding untrusted bytes is the first thing a miner does with a stranger's request, so every
length a msgpack header can claim is capped (string, binary, array, map) and nesting is bounded.
msgpack checks the claimed length of each container against these caps before allocating it;
msgpack's C decoder also has a fixed internal stack, and we cap the depth below that ourselves
after decoding (the body-size cap bounds what a deep structure can allocate first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.errors import MalformedError, PayloadTooLargeError

# Defaults sized for generation requests: a 1 MiB body holds a long prompt or chat, and no
# legitimate message needs more than a few levels of nesting or 64 Ki-element containers.
DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_STR = 1 << 20
DEFAULT_MAX_BIN = 1 << 20
DEFAULT_MAX_ARRAY = 1 << 16
DEFAULT_MAX_MAP = 1 << 12
DEFAULT_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied to one decoded msgpack document.

    Attributes:
        max_body: bytes in the whole document (HTTP 413 above it).
        max_str: bytes in one string.
        max_bin: bytes in one binary value.
        max_array: elements in one array.
        max_map: key/value pairs in one map.
        max_depth: nesting depth of containers (the top level counts as 1).
    """

    max_body: int = DEFAULT_MAX_BODY
    max_str: int = DEFAULT_MAX_STR
    max_bin: int = DEFAULT_MAX_BIN
    max_array: int = DEFAULT_MAX_ARRAY
    max_map: int = DEFAULT_MAX_MAP
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = Limits()


def pack(value: Any) -> bytes:
    """Encode ``value`` as msgpack (str as str type, bytes as bin type, no ext types).

    Deterministic: equal values give equal bytes (maps keep insertion order, so callers
    that need canonical bytes build maps in a fixed field order).

    Raises:
        MalformedError: a string holds a lone surrogate (``"\\ud800"``, which JSON parsers
            accept), so it has no UTF-8 form.
    """
    try:
        return msgpack.packb(value, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        raise MalformedError("a string is not valid Unicode text (it holds a lone surrogate, "
                             "which has no UTF-8 form)") from None


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one msgpack document from untrusted bytes.

    Returns plain Python values: dict (str keys only), list, str, bytes, int, float, bool, None.

    Raises:
        PayloadTooLargeError: the document or one of its values exceeds ``limits``.
        MalformedError: anything else wrong (truncated, trailing bytes, ext types,
            non-string map keys). Nesting deeper than ``limits.max_depth`` is a limit, so 413.
    """
    if len(data) > limits.max_body:
        raise PayloadTooLargeError(f"body is {len(data)} bytes, limit {limits.max_body}")
    try:
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, timestamp=0,
            max_str_len=limits.max_str, max_bin_len=limits.max_bin,
            max_array_len=limits.max_array, max_map_len=limits.max_map, max_ext_len=0,
            ext_hook=_reject_ext,
        )
    except msgpack.StackError:
        raise PayloadTooLargeError("msgpack nesting exceeds the decoder's stack") from None
    except msgpack.ExtraData:
        raise MalformedError("trailing bytes after the msgpack document") from None
    except _ExtRejected:
        raise MalformedError("msgpack extension types are not allowed") from None
    except ValueError as exc:
        # msgpack reports both truncation and exceeded length caps as ValueError; tell them apart
        # by message so the caller gets 413 for limits and 400 for garbage.
        text = str(exc)
        if "max_ext_len" in text:
            raise MalformedError("msgpack extension types are not allowed") from None
        if "exceeds max" in text:
            raise PayloadTooLargeError(f"msgpack value too large: {text}") from None
        raise MalformedError(f"invalid msgpack: {text}") from None
    except (TypeError, UnicodeDecodeError, msgpack.FormatError) as exc:
        raise MalformedError(f"invalid msgpack: {exc}") from None
    except Exception as exc:
        raise MalformedError(f"invalid msgpack: {type(exc).__name__}") from None
    _check_shape(value, limits.max_depth)
    return value


class _ExtRejected(Exception):
    """Internal: raised from the ext hook to abort decoding of extension types."""


def _reject_ext(code: int, data: bytes) -> Any:
    raise _ExtRejected


_SCALARS = (str, bytes, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


def _check_shape(value: Any, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth``, non-string map keys and non-plain values.

    Iterative, so a deep document cannot exhaust Python's recursion limit. Map keys are checked
    here because msgpack's ``strict_map_key`` still lets binary (bytes) keys through.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if not all(type(key) is str for key in item):
                raise MalformedError("msgpack map keys must be strings")
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        elif isinstance(item, _SCALARS):
            continue
        else:
            raise MalformedError(f"msgpack type {type(item).__name__} is not allowed")
        if depth > max_depth:
            raise PayloadTooLargeError(f"msgpack nesting deeper than {max_depth}")
        for child in children:
            # Fast path: most values are plain scalars and need no stack entry.
            if type(child) not in _SCALAR_TYPES:
                stack.append((child, depth + 1))
