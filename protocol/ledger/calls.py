"""The operations a transaction can carry ("calls"), each a frozen value with a fixed wire form.

A call's wire form is the array of its fields in declaration order (docs/spec-ledger.md §4).
Public keys travel as 32 raw bytes; amounts are integer base units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from protocol.ledger.errors import DecodeError, HyperparamError
from protocol.ledger.hyperparams import HYPERPARAM_SPECS, HyperparamValue, read_value
from protocol.ledger.units import MAX_SUPPLY
from protocol.ledger.wire import (
    U16_MAX,
    read_bytes,
    read_int,
    read_list,
    read_str,
    read_struct,
)

__all__ = [
    "CALL_TYPES",
    "Call",
    "CommitWeights",
    "CreateSubnet",
    "Faucet",
    "Register",
    "RevealWeights",
    "Serve",
    "SetHyperparams",
    "SetWeights",
    "Stake",
    "Transfer",
    "Unstake",
]

#: The most uids one weights vector may name (the largest subnet).
MAX_WEIGHTS_LEN = 4096
SALT_MIN, SALT_MAX = 8, 64
HOST_MAX = 255
PUBLIC_KEY_SIZE = 32
DIGEST_SIZE = 32
MAX_NETUID = U16_MAX


def _key(value: Any, what: str) -> bytes:
    return read_bytes(value, PUBLIC_KEY_SIZE, PUBLIC_KEY_SIZE, what)


def _amount(value: Any) -> int:
    return read_int(value, 1, MAX_SUPPLY, "amount")


def _netuid(value: Any) -> int:
    return read_int(value, 0, MAX_NETUID, "netuid")


def _u16_list(value: Any, what: str) -> tuple[int, ...]:
    return tuple(read_int(v, 0, U16_MAX, what) for v in read_list(value, MAX_WEIGHTS_LEN, what))


class Call:
    """Base of every call. ``KIND`` names it on the wire; ``SIGNER`` says which key signs."""

    __slots__ = ()
    KIND: ClassVar[str]
    SIGNER: ClassVar[str]  # "coldkey", "hotkey" or "any"
    NEEDS_COSIGNATURE: ClassVar[bool] = False

    def to_wire(self) -> list[Any]:
        """The call's fields, in declaration order."""
        raise NotImplementedError

    @classmethod
    def from_wire(cls, fields: Any) -> Call:
        """Parse the wire fields (raises :class:`DecodeError`)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Transfer(Call):
    """Move ``amount`` units from the signer's balance to ``dest``."""

    KIND: ClassVar[str] = "transfer"
    SIGNER: ClassVar[str] = "coldkey"
    dest: bytes
    amount: int

    def to_wire(self) -> list[Any]:
        return [self.dest, self.amount]

    @classmethod
    def from_wire(cls, fields: Any) -> Transfer:
        dest, amount = read_struct(fields, 2, cls.KIND)
        return cls(_key(dest, "dest"), _amount(amount))


@dataclass(frozen=True, slots=True)
class Stake(Call):
    """Move ``amount`` units from the signer's (coldkey) balance to its stake on ``hotkey``."""

    KIND: ClassVar[str] = "stake"
    SIGNER: ClassVar[str] = "coldkey"
    hotkey: bytes
    amount: int

    def to_wire(self) -> list[Any]:
        return [self.hotkey, self.amount]

    @classmethod
    def from_wire(cls, fields: Any) -> Stake:
        hotkey, amount = read_struct(fields, 2, cls.KIND)
        return cls(_key(hotkey, "hotkey"), _amount(amount))


@dataclass(frozen=True, slots=True)
class Unstake(Call):
    """Move ``amount`` units of the signer's stake on ``hotkey`` back to its balance."""

    KIND: ClassVar[str] = "unstake"
    SIGNER: ClassVar[str] = "coldkey"
    hotkey: bytes
    amount: int

    def to_wire(self) -> list[Any]:
        return [self.hotkey, self.amount]

    @classmethod
    def from_wire(cls, fields: Any) -> Unstake:
        hotkey, amount = read_struct(fields, 2, cls.KIND)
        return cls(_key(hotkey, "hotkey"), _amount(amount))


@dataclass(frozen=True, slots=True)
class Register(Call):
    """Register ``hotkey`` on ``netuid``, burning the current cost (at most ``max_burn``).

    The transaction also carries the hotkey's signature of the same signing bytes (consent).
    """

    KIND: ClassVar[str] = "register"
    SIGNER: ClassVar[str] = "coldkey"
    NEEDS_COSIGNATURE: ClassVar[bool] = True
    netuid: int
    hotkey: bytes
    max_burn: int

    def to_wire(self) -> list[Any]:
        return [self.netuid, self.hotkey, self.max_burn]

    @classmethod
    def from_wire(cls, fields: Any) -> Register:
        netuid, hotkey, max_burn = read_struct(fields, 3, cls.KIND)
        return cls(_netuid(netuid), _key(hotkey, "hotkey"),
                   read_int(max_burn, 0, MAX_SUPPLY, "max_burn"))


@dataclass(frozen=True, slots=True)
class CreateSubnet(Call):
    """Create a subnet owned by the signer, burning the lock cost (at most ``max_lock_cost``)."""

    KIND: ClassVar[str] = "create_subnet"
    SIGNER: ClassVar[str] = "coldkey"
    max_lock_cost: int

    def to_wire(self) -> list[Any]:
        return [self.max_lock_cost]

    @classmethod
    def from_wire(cls, fields: Any) -> CreateSubnet:
        (max_lock,) = read_struct(fields, 1, cls.KIND)
        return cls(read_int(max_lock, 0, MAX_SUPPLY, "max_lock_cost"))


@dataclass(frozen=True, slots=True)
class SetHyperparams(Call):
    """Change owner-settable hyperparameters of ``netuid``; ``changes`` sorted by name, unique."""

    KIND: ClassVar[str] = "set_hyperparams"
    SIGNER: ClassVar[str] = "coldkey"
    netuid: int
    changes: tuple[tuple[str, HyperparamValue], ...]

    def to_wire(self) -> list[Any]:
        return [self.netuid, [[name, value] for name, value in self.changes]]

    @classmethod
    def from_wire(cls, fields: Any) -> SetHyperparams:
        netuid, raw = read_struct(fields, 2, cls.KIND)
        changes = tuple(_change(item) for item in read_list(raw, len(HYPERPARAM_SPECS), "changes"))
        names = [name for name, _ in changes]
        if not names or names != sorted(set(names)):
            raise DecodeError("changes: need at least one, names strictly ascending")
        return cls(_netuid(netuid), changes)


def _change(item: Any) -> tuple[str, HyperparamValue]:
    name, value = read_struct(item, 2, "change")
    try:
        return name, read_value(read_str(name, 1, 64, "name"), value)
    except HyperparamError as exc:
        raise DecodeError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Serve(Call):
    """Publish the signer hotkey's endpoint on ``netuid``."""

    KIND: ClassVar[str] = "serve"
    SIGNER: ClassVar[str] = "hotkey"
    netuid: int
    host: str
    port: int
    protocol: int

    def to_wire(self) -> list[Any]:
        return [self.netuid, self.host, self.port, self.protocol]

    @classmethod
    def from_wire(cls, fields: Any) -> Serve:
        netuid, host, port, protocol = read_struct(fields, 4, cls.KIND)
        host = read_str(host, 1, HOST_MAX, "host")
        if not host.isascii() or not host.isprintable() or " " in host:
            raise DecodeError("host: printable ASCII without spaces")
        return cls(_netuid(netuid), host, read_int(port, 1, U16_MAX, "port"),
                   read_int(protocol, 0, U16_MAX, "protocol"))


@dataclass(frozen=True, slots=True)
class SetWeights(Call):
    """Set the signer hotkey's weights row on ``netuid`` (u16 weights, any scale)."""

    KIND: ClassVar[str] = "set_weights"
    SIGNER: ClassVar[str] = "hotkey"
    netuid: int
    uids: tuple[int, ...]
    weights: tuple[int, ...]

    def to_wire(self) -> list[Any]:
        return [self.netuid, list(self.uids), list(self.weights)]

    @classmethod
    def from_wire(cls, fields: Any) -> SetWeights:
        netuid, uids, weights = read_struct(fields, 3, cls.KIND)
        return cls(_netuid(netuid), _u16_list(uids, "uids"), _u16_list(weights, "weights"))


@dataclass(frozen=True, slots=True)
class CommitWeights(Call):
    """Commit to a weights row by its digest (:func:`protocol.ledger.weights.commit_digest`)."""

    KIND: ClassVar[str] = "commit_weights"
    SIGNER: ClassVar[str] = "hotkey"
    netuid: int
    digest: bytes

    def to_wire(self) -> list[Any]:
        return [self.netuid, self.digest]

    @classmethod
    def from_wire(cls, fields: Any) -> CommitWeights:
        netuid, digest = read_struct(fields, 2, cls.KIND)
        return cls(_netuid(netuid), read_bytes(digest, DIGEST_SIZE, DIGEST_SIZE, "digest"))


@dataclass(frozen=True, slots=True)
class RevealWeights(Call):
    """Reveal the weights row committed earlier, with the salt used in the digest."""

    KIND: ClassVar[str] = "reveal_weights"
    SIGNER: ClassVar[str] = "hotkey"
    netuid: int
    uids: tuple[int, ...]
    weights: tuple[int, ...]
    salt: bytes

    def to_wire(self) -> list[Any]:
        return [self.netuid, list(self.uids), list(self.weights), self.salt]

    @classmethod
    def from_wire(cls, fields: Any) -> RevealWeights:
        netuid, uids, weights, salt = read_struct(fields, 4, cls.KIND)
        return cls(_netuid(netuid), _u16_list(uids, "uids"), _u16_list(weights, "weights"),
                   read_bytes(salt, SALT_MIN, SALT_MAX, "salt"))


@dataclass(frozen=True, slots=True)
class Faucet(Call):
    """Mint ``amount`` units to ``dest``. Exists only on chains whose genesis says ``dev``."""

    KIND: ClassVar[str] = "faucet"
    SIGNER: ClassVar[str] = "any"
    dest: bytes
    amount: int

    def to_wire(self) -> list[Any]:
        return [self.dest, self.amount]

    @classmethod
    def from_wire(cls, fields: Any) -> Faucet:
        dest, amount = read_struct(fields, 2, cls.KIND)
        return cls(_key(dest, "dest"), _amount(amount))


#: Every call type by its wire ``KIND``.
CALL_TYPES: dict[str, type[Call]] = {
    cls.KIND: cls
    for cls in (Transfer, Stake, Unstake, Register, CreateSubnet, SetHyperparams, Serve,
                SetWeights, CommitWeights, RevealWeights, Faucet)
}
