"""Wire form of a :class:`Metagraph` (``GET /v1/metagraph/{netuid}``, docs/spec-ledger.md §17).

One msgpack map, keys in this order::

    {"netuid": u16, "block": uint, "n": 0..4096,
     "uids": bin, "hotkeys": [address...], "coldkeys": [address...],
     "stake": bin, "incentive": bin, "dividends": bin, "consensus": bin, "trust": bin,
     "validator_trust": bin, "validator_permit": bin, "emission": bin, "last_update": bin,
     "active": bin, "registered_at": bin,
     "endpoints": [[host, port, protocol, block] | nil, ...]}

Each numeric column is one ``bin`` of exactly ``n`` little-endian values: ``int64`` for
``uids``, ``stake``, ``emission``, ``last_update``, ``registered_at``; ``float64`` for the five
epoch outputs; one byte (0 or 1) per neuron for ``validator_permit`` and ``active``. Columns as
``bin`` keep a 4096-neuron metagraph compact and round-trip every value bit for bit
(``numpy.frombuffer`` reads them directly).

Decoding checks every column: lengths equal ``n``; ``uids`` are exactly ``0..n-1``; money and
heights non-negative (heights at most ``block``); epoch outputs finite floats in [0, 1]; flags
0 or 1; addresses with valid checksums. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocol.ledger.api_wire import (
    endpoint_from_wire,
    endpoint_to_wire,
    pack_answer,
    read_address,
    read_map,
    unpack_answer,
)
from protocol.ledger.errors import DecodeError
from protocol.ledger.metagraph import Metagraph
from protocol.ledger.units import MAX_SUPPLY
from protocol.ledger.wire import U16_MAX, U64_MAX, read_bytes, read_int, read_list

__all__ = ["MAX_NEURONS", "decode_metagraph", "encode_metagraph", "metagraph_from_wire",
           "metagraph_to_wire"]

#: The largest subnet (``max_allowed_uids`` bound, spec §8).
MAX_NEURONS = 4096

_INT_COLUMNS = ("uids", "stake", "emission", "last_update", "registered_at")
_FLOAT_COLUMNS = ("incentive", "dividends", "consensus", "trust", "validator_trust")
_BOOL_COLUMNS = ("validator_permit", "active")
_KEYS = ("netuid", "block", "n", "uids", "hotkeys", "coldkeys", "stake", "incentive",
         "dividends", "consensus", "trust", "validator_trust", "validator_permit", "emission",
         "last_update", "active", "registered_at", "endpoints")
_DTYPES: dict[str, str] = {
    **dict.fromkeys(_INT_COLUMNS, "<i8"),
    **dict.fromkeys(_FLOAT_COLUMNS, "<f8"),
    **dict.fromkeys(_BOOL_COLUMNS, "u1"),
}


def metagraph_to_wire(mg: Metagraph) -> dict[str, Any]:
    """The answer map of ``mg`` (see the module docstring)."""
    out: dict[str, Any] = {"netuid": mg.netuid, "block": mg.block, "n": mg.n}
    for key in _KEYS[3:]:
        if key in ("hotkeys", "coldkeys"):
            out[key] = list(getattr(mg, key))
        elif key == "endpoints":
            out[key] = [endpoint_to_wire(e) for e in mg.endpoints]
        else:
            column = np.asarray(getattr(mg, key)).astype(_DTYPES[key], copy=False)
            out[key] = column.tobytes()
    return out


def encode_metagraph(mg: Metagraph) -> bytes:
    """msgpack bytes of :func:`metagraph_to_wire`."""
    return pack_answer(metagraph_to_wire(mg))


def decode_metagraph(data: bytes) -> Metagraph:
    """Parse :func:`encode_metagraph` bytes (raises :class:`DecodeError`, nothing else)."""
    return unpack_answer(data, metagraph_from_wire)


def metagraph_from_wire(value: Any) -> Metagraph:
    """Rebuild a :class:`Metagraph` from its decoded answer map, checking every column.

    Raises:
        DecodeError: a missing or extra key, a wrong type or length, or a value out of range.
    """
    raw = dict(zip(_KEYS, read_map(value, _KEYS, "metagraph"), strict=True))
    netuid = read_int(raw["netuid"], 0, U16_MAX, "netuid")
    block = read_int(raw["block"], 0, U64_MAX, "block")
    n = read_int(raw["n"], 0, MAX_NEURONS, "n")
    columns = {key: _column(raw[key], key, n) for key in _DTYPES}
    _check_columns(columns, n, block)
    endpoints = tuple(endpoint_from_wire(e) for e in _sized(raw["endpoints"], "endpoints", n))
    return Metagraph(
        netuid=netuid, block=block,
        hotkeys=tuple(read_address(a, "hotkey") for a in _sized(raw["hotkeys"], "hotkeys", n)),
        coldkeys=tuple(read_address(a, "coldkey")
                       for a in _sized(raw["coldkeys"], "coldkeys", n)),
        endpoints=endpoints, **columns)


def _sized(value: Any, what: str, n: int) -> list[Any]:
    items = read_list(value, MAX_NEURONS, what)
    if len(items) != n:
        raise DecodeError(f"{what}: expected {n} entries, got {len(items)}")
    return items


def _column(value: Any, key: str, n: int) -> NDArray[Any]:
    """A read-only numpy column of the documented dtype, native byte order."""
    dtype = np.dtype(_DTYPES[key])
    data = read_bytes(value, n * dtype.itemsize, n * dtype.itemsize, key)
    parsed = np.frombuffer(data, dtype=dtype)
    if key in _BOOL_COLUMNS:
        if np.any(parsed > 1):
            raise DecodeError(f"{key}: expected bytes 0 or 1")
        column: NDArray[Any] = parsed.astype(np.bool_)
    else:
        column = parsed.astype(dtype.newbyteorder("="))
    column.setflags(write=False)
    return column


def _check_columns(columns: dict[str, NDArray[Any]], n: int, block: int) -> None:
    if not np.array_equal(columns["uids"], np.arange(n)):
        raise DecodeError("uids: expected exactly 0 .. n-1 in order")
    for key in ("stake", "emission"):
        if np.any(columns[key] < 0) or np.any(columns[key] > MAX_SUPPLY):
            raise DecodeError(f"{key}: expected units in [0, MAX_SUPPLY]")
    for key in ("last_update", "registered_at"):
        if np.any(columns[key] < 0) or np.any(columns[key] > block):
            raise DecodeError(f"{key}: expected block heights in [0, block]")
    for key in _FLOAT_COLUMNS:
        column = columns[key]
        if not np.all(np.isfinite(column)) or np.any(column < 0) or np.any(column > 1):
            raise DecodeError(f"{key}: expected finite floats in [0, 1]")
