"""The genesis of a chain: network parameters, initial balances, block authorities, dev flag.

The chain id is the hash of the canonical genesis encoding, so every transaction (which carries
the chain id) and every block (block 1 links to it) is bound to exactly one genesis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.codec import Limits
from protocol.errors import AddressError, ConfigError
from protocol.keys import decode_address, encode_address
from protocol.ledger.errors import DecodeError
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.units import MAX_SUPPLY, UNITS_PER_TOKEN
from protocol.ledger.wire import (
    decode_canonical,
    encode,
    read_bool,
    read_bytes,
    read_int,
    read_list,
    read_str,
    read_struct,
    tagged_hash,
)

__all__ = ["GENESIS_TAG", "Genesis", "NetworkParams"]

GENESIS_TAG = b"ensemblenet/genesis/v1"
GENESIS_VERSION = 1
MAX_AUTHORITIES = 64
MAX_GENESIS_BALANCES = 100_000
MAX_SUBNETS_LIMIT = 4096
_GENESIS_LIMITS = Limits(max_body=1 << 26, max_str=1 << 10, max_bin=1 << 10,
                         max_array=MAX_GENESIS_BALANCES, max_map=0, max_depth=4)


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """Chain-wide parameters fixed at genesis.

    Attributes:
        subnet_lock_cost: units burned by whoever creates a subnet (spam price of a netuid).
        max_subnets: how many subnets may exist.
        faucet_max: the most one dev-faucet transaction may mint (dev chains only).
        default_hyperparams: hyperparameters a new subnet starts with.

    Raises:
        ConfigError: a value is out of range.
    """

    subnet_lock_cost: int = 100 * UNITS_PER_TOKEN
    max_subnets: int = 32
    faucet_max: int = 1_000 * UNITS_PER_TOKEN
    default_hyperparams: SubnetHyperparams = field(default_factory=SubnetHyperparams)

    def __post_init__(self) -> None:
        _require_int(self.subnet_lock_cost, 0, MAX_SUPPLY, "subnet_lock_cost")
        _require_int(self.max_subnets, 1, MAX_SUBNETS_LIMIT, "max_subnets")
        _require_int(self.faucet_max, 0, MAX_SUPPLY, "faucet_max")
        if not isinstance(self.default_hyperparams, SubnetHyperparams):
            raise ConfigError("default_hyperparams must be a SubnetHyperparams")

    def to_wire(self) -> list[Any]:
        """``[subnet_lock_cost, max_subnets, faucet_max, hyperparams]``."""
        return [self.subnet_lock_cost, self.max_subnets, self.faucet_max,
                self.default_hyperparams.to_wire()]

    @classmethod
    def from_wire(cls, value: Any) -> NetworkParams:
        """Inverse of :meth:`to_wire` (raises :class:`DecodeError`)."""
        lock, max_subnets, faucet, hyper = read_struct(value, 4, "network params")
        try:
            return cls(read_int(lock, 0, MAX_SUPPLY, "subnet_lock_cost"),
                       read_int(max_subnets, 1, MAX_SUBNETS_LIMIT, "max_subnets"),
                       read_int(faucet, 0, MAX_SUPPLY, "faucet_max"),
                       SubnetHyperparams.from_wire(hyper))
        except ConfigError as exc:
            raise DecodeError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Genesis:
    """Everything the chain starts from. Balances and authorities are kept sorted by key.

    Attributes:
        chain_name: a label (1 to 64 characters), part of the chain id.
        dev: whether the dev faucet transaction exists on this chain.
        timestamp_ms: genesis time (Unix ms); block timestamps never go below it.
        authorities: addresses allowed to propose (sign) blocks; at least one.
        balances: ``(address, units)`` initial coldkey balances, each > 0, addresses unique.
        params: network parameters.

    Raises:
        ConfigError: an invalid field.
    """

    chain_name: str
    authorities: tuple[str, ...]
    dev: bool = False
    timestamp_ms: int = 0
    balances: tuple[tuple[str, int], ...] = ()
    params: NetworkParams = field(default_factory=NetworkParams)
    # derived once: every transaction check compares against the chain id
    _encoded: bytes = field(init=False, repr=False, compare=False)
    _chain_id: bytes = field(init=False, repr=False, compare=False)
    _authority_keys: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.chain_name, str) or not 1 <= len(self.chain_name) <= 64:
            raise ConfigError("chain_name must be 1 to 64 characters")
        _require_int(self.timestamp_ms, 0, MAX_SUPPLY, "timestamp_ms")
        if not 1 <= len(self.authorities) <= MAX_AUTHORITIES:
            raise ConfigError(f"a chain needs 1 to {MAX_AUTHORITIES} authorities")
        keys = sorted({_public_key(a): None for a in self.authorities})
        if len(keys) != len(self.authorities):
            raise ConfigError("authorities must be unique")
        object.__setattr__(self, "authorities", tuple(encode_address(k) for k in keys))
        object.__setattr__(self, "_authority_keys", frozenset(keys))
        object.__setattr__(self, "balances", _sorted_balances(self.balances))
        object.__setattr__(self, "_encoded", self._encode())
        object.__setattr__(self, "_chain_id", tagged_hash(GENESIS_TAG, self._encoded))

    @classmethod
    def for_dev(cls, authority: str, balances: tuple[tuple[str, int], ...] = (),
                params: NetworkParams | None = None) -> Genesis:
        """A dev-mode genesis with one authority (the faucet transaction is enabled)."""
        return cls(chain_name="ensemblenet-dev", authorities=(authority,), dev=True,
                   balances=balances, params=params or NetworkParams())

    @property
    def chain_id(self) -> bytes:
        """``SHA-256(GENESIS_TAG || canonical encoding)``: 32 bytes naming this chain."""
        return self._chain_id

    @property
    def authority_keys(self) -> frozenset[bytes]:
        """The authorities as raw public keys."""
        return self._authority_keys

    def encode(self) -> bytes:
        """The canonical encoding (docs/spec-ledger.md §3)."""
        return self._encoded

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        """Parse :meth:`encode` bytes (raises :class:`DecodeError`)."""
        return cls.from_wire(decode_canonical(data, _GENESIS_LIMITS))

    def _encode(self) -> bytes:
        return encode([
            GENESIS_VERSION, self.chain_name, self.dev, self.timestamp_ms,
            [decode_address(a) for a in self.authorities],
            [[decode_address(a), amount] for a, amount in self.balances],
            self.params.to_wire(),
        ])

    @classmethod
    def from_wire(cls, value: Any) -> Genesis:
        """Rebuild from the decoded canonical array (raises :class:`DecodeError`)."""
        version, name, dev, ts, auths, bals, params = read_struct(value, 7, "genesis")
        read_int(version, GENESIS_VERSION, GENESIS_VERSION, "genesis version")
        authorities = tuple(encode_address(read_bytes(a, 32, 32, "authority"))
                            for a in read_list(auths, MAX_AUTHORITIES, "authorities"))
        balances = tuple(_read_balance(b) for b in read_list(bals, MAX_GENESIS_BALANCES,
                                                             "balances"))
        try:
            return cls(chain_name=read_str(name, 1, 64, "chain_name"), authorities=authorities,
                       dev=read_bool(dev, "dev"), timestamp_ms=read_int(ts, 0, MAX_SUPPLY, "ts"),
                       balances=balances, params=NetworkParams.from_wire(params))
        except ConfigError as exc:
            raise DecodeError(f"genesis: {exc}") from None


def _read_balance(value: Any) -> tuple[str, int]:
    key, amount = read_struct(value, 2, "genesis balance")
    return (encode_address(read_bytes(key, 32, 32, "balance key")),
            read_int(amount, 1, MAX_SUPPLY, "balance amount"))


def _sorted_balances(balances: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    entries = sorted((_public_key(address), amount) for address, amount in balances)
    if len({key for key, _ in entries}) != len(entries):
        raise ConfigError("genesis balances name an address twice")
    for _, amount in entries:
        _require_int(amount, 1, MAX_SUPPLY, "genesis balance")
    if sum(amount for _, amount in entries) > MAX_SUPPLY:
        raise ConfigError("genesis balances exceed the maximum supply")
    return tuple((encode_address(key), amount) for key, amount in entries)


def _public_key(address: str) -> bytes:
    try:
        return decode_address(address)
    except AddressError as exc:
        raise ConfigError(f"genesis: {exc}") from None


def _require_int(value: Any, low: int, high: int, what: str) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{what} must be an integer in [{low}, {high}], got {value!r}")

