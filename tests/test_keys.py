"""Addresses, key pairs and signatures (protocol/keys.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import AddressError, IdentityError
from protocol.keys import (
    ADDRESS_LENGTH,
    ADDRESS_PREFIX,
    Keypair,
    PublicKey,
    decode_address,
    encode_address,
    is_address,
    verify,
)

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
#: Fixed seeds so failures reproduce; 0x00.., 0xff.. and three arbitrary ones.
SAMPLE_SEEDS = [bytes(32), b"\xff" * 32, bytes(range(32)), b"ensemblenet-test-seed-0123456789",
                bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")]
SAMPLE_KEYS = [Keypair(seed) for seed in SAMPLE_SEEDS]


def test_rfc8032_test_vector_1() -> None:
    """The seed of RFC 8032 test 1 gives its public key and its signature of the empty message."""
    pair = Keypair(SAMPLE_SEEDS[4])
    assert pair.public_key.raw.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert pair.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


@pytest.mark.parametrize("pair", SAMPLE_KEYS, ids=lambda p: p.address[:12])
def test_address_round_trip(pair: Keypair) -> None:
    """encode_address then decode_address returns the same key; the text has the fixed form."""
    address = pair.address
    assert address.startswith(ADDRESS_PREFIX)
    assert len(address) == ADDRESS_LENGTH == 62
    assert address == address.lower()
    assert decode_address(address) == pair.public_key.raw
    assert PublicKey.from_address(address) == pair.public_key
    assert str(pair.public_key) == address


def test_address_golden_value() -> None:
    """The all-zero seed has a fixed address (guards against format drift)."""
    assert Keypair(bytes(32)).address == (
        "ens1hnvcppgow2sc2yvdvdicu3ynonsteflxdxrehjr2ybekdc2z3iutxfrkda")


@pytest.mark.parametrize("pair", SAMPLE_KEYS, ids=lambda p: p.address[:12])
def test_upper_and_mixed_case_decode(pair: Keypair) -> None:
    """Addresses are case-insensitive: upper and mixed case name the same key."""
    address = pair.address
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(address))
    assert decode_address(address.upper()) == pair.public_key.raw
    assert decode_address(mixed) == pair.public_key.raw
    assert decode_address(f"  {address}\n") == pair.public_key.raw


@pytest.mark.parametrize("pair", SAMPLE_KEYS, ids=lambda p: p.address[:12])
def test_every_single_character_typo_is_rejected(pair: Keypair) -> None:
    """Replacing any one base32 character (except the last, see below) raises AddressError."""
    address = pair.address
    accepted = []
    for pos in range(len(ADDRESS_PREFIX), len(address) - 1):
        for char in BASE32.replace(address[pos], ""):
            typo = address[:pos] + char + address[pos + 1:]
            if is_address(typo):
                accepted.append(typo)
    assert accepted == []


@pytest.mark.parametrize("pair", SAMPLE_KEYS, ids=lambda p: p.address[:12])
def test_last_character_typo_changes_the_key_or_is_rejected(pair: Keypair) -> None:
    """A typo in the last character never yields a *different* key."""
    address = pair.address
    for char in BASE32.replace(address[-1], ""):
        try:
            key = decode_address(address[:-1] + char)
        except AddressError:
            continue
        assert key == pair.public_key.raw


def test_last_character_padding_bits_are_canonical() -> None:
    """Only the canonical spelling of the last character is accepted."""
    address = SAMPLE_KEYS[0].address
    assert [c for c in BASE32 if is_address(address[:-1] + c)] == [address[-1]]


def test_non_ascii_look_alikes_are_rejected() -> None:
    """An address spelled with a Unicode look-alike of a base32 letter is rejected."""
    address = SAMPLE_KEYS[0].address
    assert "k" in address[len(ADDRESS_PREFIX):]
    spoofed = ADDRESS_PREFIX + address[len(ADDRESS_PREFIX):].replace("k", "\u212a", 1)
    with pytest.raises(AddressError):
        decode_address(spoofed)


def test_wrong_prefix_message() -> None:
    """A different prefix is rejected with a message naming the expected prefix."""
    address = SAMPLE_KEYS[0].address
    with pytest.raises(AddressError, match="must start with 'ens1'"):
        decode_address("btc1" + address[4:])


@pytest.mark.parametrize("cut", [1, 2, 10])
def test_wrong_length_message(cut: int) -> None:
    """A shortened or lengthened address is rejected with the counts in the message."""
    address = SAMPLE_KEYS[0].address
    with pytest.raises(AddressError, match=f"has {62 - cut} characters, expected 62"):
        decode_address(address[:-cut])
    with pytest.raises(AddressError, match=f"has {62 + cut} characters, expected 62"):
        decode_address(address + "a" * cut)


def test_bad_alphabet_message() -> None:
    """Digits outside 2-7 are reported as outside the base32 alphabet."""
    address = SAMPLE_KEYS[0].address
    with pytest.raises(AddressError, match="outside base32"):
        decode_address(address[:10] + "1" + address[11:])


def test_non_text_is_rejected() -> None:
    """bytes are not an address."""
    with pytest.raises(AddressError, match="an address is text"):
        decode_address(SAMPLE_KEYS[0].address.encode())  # type: ignore[arg-type]


def test_encode_rejects_wrong_key_length() -> None:
    """encode_address needs exactly 32 bytes."""
    with pytest.raises(AddressError, match="32 bytes, got 31"):
        encode_address(bytes(31))


def test_keypair_rejects_wrong_seed_length() -> None:
    """A seed must be 32 bytes."""
    with pytest.raises(IdentityError, match="32 bytes, got 33"):
        Keypair(bytes(33))


def test_sign_and_verify() -> None:
    """A signature verifies for its key and message only."""
    alice, bob = SAMPLE_KEYS[0], SAMPLE_KEYS[1]
    signature = alice.sign(b"hello")
    assert len(signature) == 64
    assert alice.public_key.verify(b"hello", signature)
    assert verify(alice.public_key.raw, b"hello", signature)
    assert not alice.public_key.verify(b"hellO", signature)
    assert not bob.public_key.verify(b"hello", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not alice.public_key.verify(b"hello", flipped)


@pytest.mark.parametrize("signature", [b"", b"\x00", bytes(63), bytes(64), bytes(65)],
                         ids=["empty", "one-byte", "short", "zeros", "long"])
def test_empty_short_or_garbage_signature_is_invalid(signature: bytes) -> None:
    """Missing or malformed signatures are invalid, never an exception."""
    assert not SAMPLE_KEYS[0].public_key.verify(b"hello", signature)


def test_verify_with_wrong_size_key_is_invalid() -> None:
    """A wrongly sized public key makes verification fail, not raise."""
    signature = SAMPLE_KEYS[0].sign(b"x")
    assert not verify(bytes(31), b"x", signature)


def test_generate_gives_distinct_keys() -> None:
    """Two generated key pairs differ."""
    assert Keypair.generate().address != Keypair.generate().address


def test_repr_shows_address_not_seed() -> None:
    """repr never leaks the seed."""
    pair = SAMPLE_KEYS[2]
    assert repr(pair) == f"Keypair(address={pair.address!r})"
    assert pair.seed.hex() not in repr(pair)


@given(st.text())
def test_decode_address_fuzz_text(text: str) -> None:
    """Arbitrary text either decodes to 32 bytes or raises AddressError, nothing else."""
    try:
        key = decode_address(text)
    except AddressError:
        return
    assert len(key) == 32


@given(st.text(alphabet=BASE32 + BASE32.upper() + "0189=", min_size=58, max_size=58))
def test_decode_address_fuzz_near_misses(body: str) -> None:
    """Well-shaped random bodies decode to 32 bytes (rare) or raise AddressError."""
    try:
        key = decode_address(ADDRESS_PREFIX + body)
    except AddressError:
        return
    assert len(key) == 32


@given(st.binary(min_size=32, max_size=32))
def test_round_trip_any_key(raw: bytes) -> None:
    """Every 32-byte string round-trips through its address."""
    assert decode_address(encode_address(raw)) == raw
