"""Ed25519 identities and their text addresses.

This is the only module that touches the signature library, so the choice of backend
can change in one place. We use libsodium through PyNaCl: on our 2-core reference machine
it verifies about twice as fast as OpenSSL through ``cryptography`` (see PERF-NOTES), and
verification is the miner's hot path. Keys are plain RFC 8032 Ed25519 keys either way.

Address format (SPEC.md §2): ``"ens1"`` + lower-case RFC 4648 base32 (no padding) of
``public_key (32 bytes) || checksum (4 bytes)``, where
``checksum = BLAKE2b(ADDRESS_CHECKSUM_KEY || public_key, digest_size=4)``.
Base32 is case-insensitive and has no ambiguous symbols, so a person can read an address
aloud; 32 bits of checksum catch any typo with probability 1 - 2^-32.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

from protocol.errors import AddressError, IdentityError

ADDRESS_PREFIX = "ens1"
ADDRESS_CHECKSUM_KEY = b"ensemblenet/address/v1"
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
_CHECKSUM_SIZE = 4
#: ``ens1`` + base32 of 36 bytes without padding (58 characters).
ADDRESS_LENGTH = len(ADDRESS_PREFIX) + 58


def _checksum(public_key: bytes) -> bytes:
    return hashlib.blake2b(ADDRESS_CHECKSUM_KEY + public_key, digest_size=_CHECKSUM_SIZE).digest()


def encode_address(public_key: bytes) -> str:
    """Return the text address of a 32-byte Ed25519 public key.

    Raises:
        AddressError: ``public_key`` is not 32 bytes.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise AddressError(f"a public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return _encode_cached(bytes(public_key))


# Conversions sit on the request hot path (several per request, ~15 µs each in pure Python);
# a bounded cache of the recently seen keys removes them. Failures are never cached.
@functools.lru_cache(maxsize=8192)
def _encode_cached(public_key: bytes) -> str:
    raw = public_key + _checksum(public_key)
    return ADDRESS_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def decode_address(address: str) -> bytes:
    """Return the 32-byte public key an address names.

    Accepts upper or lower case. Raises :class:`AddressError` with a message that says
    what is wrong (prefix, length, alphabet or checksum) for anything else.
    """
    if not isinstance(address, str):
        raise AddressError(f"an address is text, got {type(address).__name__}")
    return _decode_cached(address)


@functools.lru_cache(maxsize=8192)
def _decode_cached(address: str) -> bytes:
    text = address.strip()
    if not text.isascii():
        # Case folding of non-ASCII look-alikes (e.g. KELVIN SIGN) could otherwise yield letters.
        raise AddressError(f"address {address!r} has non-ASCII characters")
    text = text.lower()
    if not text.startswith(ADDRESS_PREFIX):
        raise AddressError(f"address {address!r} must start with {ADDRESS_PREFIX!r}")
    if len(text) != ADDRESS_LENGTH:
        raise AddressError(
            f"address {address!r} has {len(text)} characters, expected {ADDRESS_LENGTH}")
    body = text[len(ADDRESS_PREFIX):].upper() + "======"
    try:
        raw = base64.b32decode(body)
    except ValueError:
        raise AddressError(
            f"address {address!r} has characters outside base32 (a-z, 2-7)") from None
    key, check = raw[:PUBLIC_KEY_SIZE], raw[PUBLIC_KEY_SIZE:]
    if not hmac.compare_digest(check, _checksum(key)) or encode_address(key) != text:
        # The second test rejects non-canonical spellings (the last base32 symbol has two spare
        # bits), so one key has exactly one address and string comparison is sound.
        raise AddressError(f"address {address!r} has a wrong checksum: check it for typos")
    return key


def is_address(text: str) -> bool:
    """Return whether ``text`` is a well-formed address with a valid checksum."""
    try:
        decode_address(text)
    except AddressError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key: verifies signatures and names an identity by its address."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise IdentityError(f"a public key is {PUBLIC_KEY_SIZE} bytes, got {len(self.raw)}")

    @classmethod
    def from_address(cls, address: str) -> PublicKey:
        """Parse an address (raises :class:`AddressError`)."""
        return cls(decode_address(address))

    @property
    def address(self) -> str:
        """The checksummed text form of this key."""
        return encode_address(self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's valid signature of ``message``.

        Never raises for bad input: an empty, short or garbage signature is simply invalid.
        """
        return verify(self.raw, message, signature)

    def __str__(self) -> str:
        return self.address


class Keypair:
    """An Ed25519 signing key. The seed never leaves this object except through ``seed``."""

    __slots__ = ("_public", "_secret")

    def __init__(self, seed: bytes) -> None:
        """Build a key pair from a 32-byte seed (no I/O).

        Raises:
            IdentityError: the seed is not 32 bytes.
        """
        if len(seed) != SEED_SIZE:
            raise IdentityError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        # libsodium's secret key is the seed followed by the public key.
        public, self._secret = nacl.bindings.crypto_sign_seed_keypair(bytes(seed))
        self._public = PublicKey(public)

    @classmethod
    def generate(cls) -> Keypair:
        """Return a new key pair from the operating system's random source."""
        return cls(os.urandom(SEED_SIZE))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed (handle with care)."""
        return self._secret[:SEED_SIZE]

    @property
    def public_key(self) -> PublicKey:
        """The public half."""
        return self._public

    @property
    def address(self) -> str:
        """The address of the public half."""
        return self._public.address

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        # libsodium's combined form is signature || message; the binding is called directly
        # because the object API around it costs more Python calls than the signing itself
        # saves on a short message, and this runs on every request and receipt.
        return nacl.bindings.crypto_sign(message, self._secret)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"Keypair(address={self.address!r})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    An empty or wrongly sized signature or key is invalid, never an exception: callers must not
    be able to skip verification by sending nothing.
    """
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError, TypeError):
        return False
    return True
