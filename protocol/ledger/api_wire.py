"""Wire forms of the chain node's HTTP answers: receipts, outcomes, events, accounts, subnets,
neurons, the head and the chain description (docs/spec-ledger.md §17).

Every answer is one msgpack **map** with text keys in a fixed order (so equal values encode to
equal bytes) and an exact key set. Addresses travel as ``ens1…`` text, hashes and chain ids as
32-byte ``bin``, money as integer units, u16 proportions as the float the views carry.
Decoding is strict: every key present, no extra key, every value of exactly its type and range,
so :mod:`protocol.ledger.remote` returns the very frozen view values :class:`Chain` builds.

Pure: no I/O. Encoders take the view types; decoders take the already-unpacked msgpack value
(:func:`unpack_answer` does that step) and raise :class:`DecodeError` naming the field.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from protocol import codec
from protocol.errors import AddressError, WireError
from protocol.keys import decode_address
from protocol.ledger import events as ev
from protocol.ledger.chain import TxReceipt
from protocol.ledger.errors import DecodeError, HyperparamError, Reason
from protocol.ledger.genesis import GENESIS_TAG
from protocol.ledger.hyperparams import HYPERPARAM_SPECS, SubnetHyperparams, read_value
from protocol.ledger.machine import TxOutcome
from protocol.ledger.state import Endpoint
from protocol.ledger.units import MAX_SUPPLY
from protocol.ledger.views import AccountInfo, NeuronInfo, SubnetInfo
from protocol.ledger.wire import (
    U16_MAX,
    U64_MAX,
    read_bool,
    read_bytes,
    read_float,
    read_int,
    read_list,
    read_str,
    tagged_hash,
)

__all__ = [
    "ANSWER_LIMITS",
    "EVENT_TYPES",
    "ChainDescription",
    "Head",
    "account_from_wire",
    "account_to_wire",
    "chain_from_wire",
    "chain_to_wire",
    "endpoint_from_wire",
    "endpoint_to_wire",
    "event_from_wire",
    "event_to_wire",
    "head_from_wire",
    "head_to_wire",
    "hyperparams_from_wire",
    "hyperparams_to_wire",
    "neuron_from_wire",
    "neuron_to_wire",
    "outcome_from_wire",
    "outcome_to_wire",
    "pack_answer",
    "read_address",
    "read_map",
    "receipt_from_wire",
    "receipt_to_wire",
    "subnet_from_wire",
    "subnet_to_wire",
    "subnets_from_wire",
    "subnets_to_wire",
    "unpack_answer",
]

#: Caps for decoding a node's answer. The largest are a metagraph of 4096 neurons (two address
#: columns and the endpoints, about 2 MiB) and a genesis with many balances (one ``bin``);
#: 16 MiB leaves room without letting a broken or hostile node make a client allocate without
#: bound.
ANSWER_LIMITS = codec.Limits(max_body=16 << 20, max_str=1 << 16, max_bin=8 << 20,
                             max_array=1 << 13, max_map=64, max_depth=6)
_HASH = 32
_MAX_TEXT = 1024
_MAX_LIST = 4096

T = TypeVar("T")

#: Every event type, by its stable ``KIND`` (spec §14).
EVENT_TYPES: dict[str, type[ev.Event]] = {
    cls.KIND: cls for cls in (
        ev.Transferred, ev.Staked, ev.Unstaked, ev.FaucetPaid, ev.SubnetCreated,
        ev.HyperparamsSet, ev.Registered, ev.Pruned, ev.Served, ev.WeightsSet,
        ev.WeightsCommitted, ev.WeightsRevealed, ev.CommitExpired, ev.BurnAdjusted,
        ev.EpochRun)
}



def _fields_of(cls: type[ev.Event]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]  # events are dataclasses
    return names, tuple(hints[name] for name in names)


#: Field names and types of each event kind, resolved once (decoding checks every field).
_EVENT_FIELDS = {kind: _fields_of(cls) for kind, cls in EVENT_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block as a node reports it: height and hash (the chain id at 0)."""

    chain_id: bytes
    height: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class ChainDescription:
    """What ``GET /v1/chain`` says: the canonical genesis bytes and the node's block time.

    ``chain_id`` must equal ``H("ensemblenet/genesis/v1", genesis)``; the decoder checks it, so
    a client knows which genesis the id it signs for stands for.
    """

    chain_id: bytes
    genesis: bytes
    block_time: float
    height: int


# --- packing --------------------------------------------------------------------------------


def pack_answer(value: Mapping[str, Any]) -> bytes:
    """msgpack bytes of an answer map (keys keep the order they were built in)."""
    return codec.pack(dict(value))


def unpack_answer(data: bytes, reader: Callable[[Any], T]) -> T:
    """Decode an answer body with ``reader`` (one of the ``*_from_wire`` functions).

    Raises:
        DecodeError: not msgpack, over :data:`ANSWER_LIMITS`, or not the expected value.
    """
    try:
        value = codec.unpack(data, ANSWER_LIMITS)
    except WireError as exc:
        raise DecodeError(f"answer is not valid msgpack: {exc.message}") from None
    return reader(value)


def read_map(value: Any, keys: tuple[str, ...], what: str) -> list[Any]:
    """Return the values of map ``value`` in ``keys`` order if its key set is exactly ``keys``.

    Raises:
        DecodeError: not a map, a key missing, or an extra key.
    """
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a map")
    if set(value) != set(keys):
        missing = sorted(set(keys) - set(value))
        extra = sorted(str(k) for k in set(value) - set(keys))
        raise DecodeError(f"{what}: expected the keys {list(keys)} "
                          f"(missing {missing}, unexpected {extra})")
    return [value[key] for key in keys]


# --- field readers --------------------------------------------------------------------------


def read_address(value: Any, what: str) -> str:
    """An ``ens1…`` address in text form (checksum verified)."""
    text = read_str(value, 1, 128, what)
    try:
        decode_address(text)
    except AddressError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    return text


def _units(value: Any, what: str) -> int:
    return read_int(value, 0, MAX_SUPPLY, what)


def _u64(value: Any, what: str) -> int:
    return read_int(value, 0, U64_MAX, what)


def _ratio(value: Any, what: str) -> float:
    result = read_float(value, what)
    if not 0.0 <= result <= 1.0:
        raise DecodeError(f"{what}: expected a float in [0, 1]")
    return result


def _hash(value: Any, what: str) -> bytes:
    return read_bytes(value, _HASH, _HASH, what)


def _optional(value: Any, reader: Callable[[Any], T]) -> T | None:
    return None if value is None else reader(value)


# --- receipts, outcomes, events -------------------------------------------------------------

_RECEIPT_KEYS = ("tx_hash", "signer", "nonce", "queued_at_height")


def receipt_to_wire(receipt: TxReceipt) -> dict[str, Any]:
    """``{tx_hash, signer, nonce, queued_at_height}``."""
    return {"tx_hash": receipt.tx_hash, "signer": receipt.signer, "nonce": receipt.nonce,
            "queued_at_height": receipt.queued_at_height}


def receipt_from_wire(value: Any) -> TxReceipt:
    """Inverse of :func:`receipt_to_wire` (raises :class:`DecodeError`)."""
    tx_hash, signer, nonce, height = read_map(value, _RECEIPT_KEYS, "receipt")
    return TxReceipt(_hash(tx_hash, "tx_hash"), read_address(signer, "signer"),
                     _u64(nonce, "nonce"), _u64(height, "queued_at_height"))


def event_to_wire(event: ev.Event) -> dict[str, Any]:
    """``{kind, <fields in declaration order>}``; tuples become arrays."""
    out: dict[str, Any] = {"kind": event.KIND}
    for f in fields(event):  # type: ignore[arg-type]  # events are dataclasses
        value = getattr(event, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def event_from_wire(value: Any) -> ev.Event:
    """Inverse of :func:`event_to_wire` (raises :class:`DecodeError` on an unknown kind or a
    field of the wrong type)."""
    if not isinstance(value, dict):
        raise DecodeError("event: expected a map")
    kind = read_str(value.get("kind"), 1, 64, "event kind")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise DecodeError(f"event: unknown kind {kind!r}")
    names, hints = _EVENT_FIELDS[kind]
    raw = read_map(value, ("kind", *names), f"{kind} event")[1:]
    args = [_event_field(hint, item, f"{kind}.{name}")
            for name, hint, item in zip(names, hints, raw, strict=True)]
    return cls(*args)


def _event_field(hint: Any, value: Any, what: str) -> Any:
    if hint is int:
        return _u64(value, what)
    if hint is str:
        return read_str(value, 0, _MAX_TEXT, what)
    if hint == tuple[str, ...]:
        return tuple(read_str(item, 0, _MAX_TEXT, what)
                     for item in read_list(value, _MAX_LIST, what))
    raise DecodeError(f"{what}: no wire reader for {hint!r}")  # a new event field type


_OUTCOME_KEYS = ("tx_hash", "applied", "height", "reason", "message", "events")


def outcome_to_wire(outcome: TxOutcome) -> dict[str, Any]:
    """``{tx_hash, applied, height|nil, reason|nil, message, events: [event...]}``."""
    return {"tx_hash": outcome.tx_hash, "applied": outcome.applied, "height": outcome.height,
            "reason": None if outcome.reason is None else outcome.reason.value,
            "message": outcome.message,
            "events": [event_to_wire(e) for e in outcome.events]}


def outcome_from_wire(value: Any) -> TxOutcome:
    """Inverse of :func:`outcome_to_wire`. An applied outcome has a height and no reason; a
    rejected one a reason and no events (raises :class:`DecodeError` otherwise)."""
    tx_hash, applied, height, reason, message, events = read_map(value, _OUTCOME_KEYS,
                                                                 "outcome")
    is_applied = read_bool(applied, "applied")
    outcome = TxOutcome(
        tx_hash=_hash(tx_hash, "tx_hash"), applied=is_applied,
        events=tuple(event_from_wire(e) for e in read_list(events, _MAX_LIST, "events")),
        reason=_optional(reason, _reason), message=read_str(message, 0, _MAX_TEXT, "message"),
        height=_optional(height, lambda h: _u64(h, "height")))
    if is_applied != (outcome.reason is None) or (is_applied and outcome.height is None) or (
            not is_applied and outcome.events):
        raise DecodeError("outcome: applied, height, reason and events disagree")
    return outcome


def _reason(value: Any) -> Reason:
    text = read_str(value, 1, 64, "reason")
    try:
        return Reason(text)
    except ValueError:
        raise DecodeError(f"reason: unknown code {text!r}") from None


# --- accounts, subnets, neurons -------------------------------------------------------------

_ACCOUNT_KEYS = ("address", "balance", "nonce", "next_nonce", "stakes", "staked_on", "owner")


def account_to_wire(info: AccountInfo) -> dict[str, Any]:
    """``{address, balance, nonce, next_nonce, stakes: [[hotkey, units]...], staked_on,
    owner|nil}``."""
    return {"address": info.address, "balance": info.balance, "nonce": info.nonce,
            "next_nonce": info.next_nonce, "stakes": [list(s) for s in info.stakes],
            "staked_on": info.staked_on, "owner": info.owner}


def account_from_wire(value: Any) -> AccountInfo:
    """Inverse of :func:`account_to_wire` (raises :class:`DecodeError`)."""
    address, balance, nonce, next_nonce, stakes, staked_on, owner = read_map(
        value, _ACCOUNT_KEYS, "account")
    pairs = []
    for item in read_list(stakes, _MAX_LIST * 16, "stakes"):
        if not isinstance(item, list) or len(item) != 2:
            raise DecodeError("stakes: expected [hotkey, units] pairs")
        pairs.append((read_address(item[0], "stake hotkey"), _units(item[1], "stake units")))
    return AccountInfo(address=read_address(address, "address"),
                       balance=_units(balance, "balance"), nonce=_u64(nonce, "nonce"),
                       next_nonce=_u64(next_nonce, "next_nonce"), stakes=tuple(pairs),
                       staked_on=_units(staked_on, "staked_on"),
                       owner=_optional(owner, lambda o: read_address(o, "owner")))


def hyperparams_to_wire(params: SubnetHyperparams) -> dict[str, Any]:
    """``{name: value}`` in spec §8 order, values of their exact types."""
    return {spec.name: getattr(params, spec.name) for spec in HYPERPARAM_SPECS}


def hyperparams_from_wire(value: Any) -> SubnetHyperparams:
    """Inverse of :func:`hyperparams_to_wire`: every name, exact types, valid values."""
    names = tuple(spec.name for spec in HYPERPARAM_SPECS)
    raw = read_map(value, names, "hyperparams")
    try:
        typed = {name: read_value(name, item) for name, item in zip(names, raw, strict=True)}
        return SubnetHyperparams(**typed)  # type: ignore[arg-type]
    except HyperparamError as exc:
        raise DecodeError(f"hyperparams: {exc}") from None


_SUBNET_KEYS = ("netuid", "owner", "created_at", "hyperparams", "burn", "neurons",
                "pending_emission", "epochs_run", "last_epoch_block", "next_epoch_block")


def subnet_to_wire(info: SubnetInfo) -> dict[str, Any]:
    """Every :class:`SubnetInfo` field by name; ``hyperparams`` as a map."""
    return {"netuid": info.netuid, "owner": info.owner, "created_at": info.created_at,
            "hyperparams": hyperparams_to_wire(info.hyperparams), "burn": info.burn,
            "neurons": info.neurons, "pending_emission": info.pending_emission,
            "epochs_run": info.epochs_run, "last_epoch_block": info.last_epoch_block,
            "next_epoch_block": info.next_epoch_block}


def subnet_from_wire(value: Any) -> SubnetInfo:
    """Inverse of :func:`subnet_to_wire` (raises :class:`DecodeError`)."""
    (netuid, owner, created_at, hyper, burn, neurons, pending, epochs, last_epoch,
     next_epoch) = read_map(value, _SUBNET_KEYS, "subnet")
    return SubnetInfo(netuid=read_int(netuid, 0, U16_MAX, "netuid"),
                      owner=read_address(owner, "owner"),
                      created_at=_u64(created_at, "created_at"),
                      hyperparams=hyperparams_from_wire(hyper), burn=_units(burn, "burn"),
                      neurons=read_int(neurons, 0, _MAX_LIST, "neurons"),
                      pending_emission=_units(pending, "pending_emission"),
                      epochs_run=_u64(epochs, "epochs_run"),
                      last_epoch_block=_u64(last_epoch, "last_epoch_block"),
                      next_epoch_block=_u64(next_epoch, "next_epoch_block"))


def subnets_to_wire(infos: tuple[SubnetInfo, ...]) -> dict[str, Any]:
    """``{subnets: [subnet...]}`` by netuid."""
    return {"subnets": [subnet_to_wire(s) for s in infos]}


def subnets_from_wire(value: Any) -> tuple[SubnetInfo, ...]:
    """Inverse of :func:`subnets_to_wire`."""
    (items,) = read_map(value, ("subnets",), "subnets")
    return tuple(subnet_from_wire(s) for s in read_list(items, _MAX_LIST, "subnets"))


def endpoint_to_wire(endpoint: Endpoint | None) -> list[Any] | None:
    """``[host, port, protocol, block]`` or nil."""
    if endpoint is None:
        return None
    return [endpoint.host, endpoint.port, endpoint.protocol, endpoint.block]


def endpoint_from_wire(value: Any) -> Endpoint | None:
    """Inverse of :func:`endpoint_to_wire` (raises :class:`DecodeError`)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise DecodeError("endpoint: expected [host, port, protocol, block]")
    host, port, protocol, block = value
    return Endpoint(read_str(host, 1, 255, "endpoint host"),
                    read_int(port, 1, U16_MAX, "endpoint port"),
                    read_int(protocol, 0, U16_MAX, "endpoint protocol"),
                    _u64(block, "endpoint block"))


_NEURON_KEYS = ("netuid", "uid", "hotkey", "coldkey", "stake", "registered_at", "last_update",
                "validator_permit", "active", "incentive", "dividends", "trust", "consensus",
                "validator_trust", "emission", "endpoint", "weights", "bonds")
_RATIOS = ("incentive", "dividends", "trust", "consensus", "validator_trust")


def neuron_to_wire(info: NeuronInfo) -> dict[str, Any]:
    """Every :class:`NeuronInfo` field by name; ``weights``/``bonds`` as ``[[uid, u16]...]``."""
    out: dict[str, Any] = {}
    for key in _NEURON_KEYS:
        value = getattr(info, key)
        if key == "endpoint":
            value = endpoint_to_wire(value)
        elif key in ("weights", "bonds"):
            value = [list(pair) for pair in value]
        out[key] = value
    return out


def neuron_from_wire(value: Any) -> NeuronInfo:
    """Inverse of :func:`neuron_to_wire` (raises :class:`DecodeError`)."""
    raw = dict(zip(_NEURON_KEYS, read_map(value, _NEURON_KEYS, "neuron"), strict=True))
    ratios = {key: _ratio(raw[key], key) for key in _RATIOS}
    return NeuronInfo(
        netuid=read_int(raw["netuid"], 0, U16_MAX, "netuid"),
        uid=read_int(raw["uid"], 0, U16_MAX, "uid"),
        hotkey=read_address(raw["hotkey"], "hotkey"),
        coldkey=read_address(raw["coldkey"], "coldkey"), stake=_units(raw["stake"], "stake"),
        registered_at=_u64(raw["registered_at"], "registered_at"),
        last_update=_u64(raw["last_update"], "last_update"),
        validator_permit=read_bool(raw["validator_permit"], "validator_permit"),
        active=read_bool(raw["active"], "active"), emission=_units(raw["emission"], "emission"),
        endpoint=endpoint_from_wire(raw["endpoint"]), weights=_row(raw["weights"], "weights"),
        bonds=_row(raw["bonds"], "bonds"), **ratios)


def _row(value: Any, what: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for item in read_list(value, _MAX_LIST, what):
        if not isinstance(item, list) or len(item) != 2:
            raise DecodeError(f"{what}: expected [uid, value] pairs")
        pairs.append((read_int(item[0], 0, U16_MAX, f"{what} uid"),
                      read_int(item[1], 0, U16_MAX, f"{what} value")))
    return tuple(pairs)


# --- head and chain -------------------------------------------------------------------------

_HEAD_KEYS = ("chain_id", "height", "hash")


def head_to_wire(head: Head) -> dict[str, Any]:
    """``{chain_id, height, hash}``."""
    return {"chain_id": head.chain_id, "height": head.height, "hash": head.hash}


def head_from_wire(value: Any) -> Head:
    """Inverse of :func:`head_to_wire` (raises :class:`DecodeError`)."""
    chain_id, height, block_hash = read_map(value, _HEAD_KEYS, "head")
    return Head(_hash(chain_id, "chain_id"), _u64(height, "height"), _hash(block_hash, "hash"))


_CHAIN_KEYS = ("chain_id", "genesis", "block_time", "height")


def chain_to_wire(info: ChainDescription) -> dict[str, Any]:
    """``{chain_id, genesis: bin, block_time: float seconds, height}``."""
    return {"chain_id": info.chain_id, "genesis": info.genesis,
            "block_time": float(info.block_time), "height": info.height}


def chain_from_wire(value: Any) -> ChainDescription:
    """Inverse of :func:`chain_to_wire`; checks that the chain id is the genesis hash.

    Raises:
        DecodeError: a bad field, or a chain id that is not ``H(genesis tag, genesis)``.
    """
    chain_id, genesis, block_time, height = read_map(value, _CHAIN_KEYS, "chain")
    chain_id = _hash(chain_id, "chain_id")
    genesis = read_bytes(genesis, 1, ANSWER_LIMITS.max_bin, "genesis")
    if tagged_hash(GENESIS_TAG, genesis) != chain_id:
        raise DecodeError("chain: the chain id is not the hash of the genesis it came with")
    seconds = read_float(block_time, "block_time")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise DecodeError("chain: block_time must be positive")
    return ChainDescription(chain_id, genesis, seconds, _u64(height, "height"))
