"""Key file codec and atomic, private file handling (protocol/keyfile.py)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import keyfile
from protocol.errors import (
    ConfigError,
    KeyfileCorruptError,
    KeyfileError,
    KeyfileExistsError,
    KeyfilePermissionError,
    WrongPasswordError,
)
from protocol.keyfile import (
    ENCRYPTED_SIZE,
    MAGIC_ENCRYPTED,
    MAGIC_PLAINTEXT,
    PLAINTEXT_SIZE,
    KdfParams,
    decode,
    encode_encrypted,
    encode_plaintext,
    is_encrypted,
)

CHEAP = KdfParams(n=2**10)
SEED = bytes(range(32))
PASSWORD = "correct horse"
HEADER_SIZE = 57  # the fields; version 2 follows them with a 16-byte checksum
V2_HEADER_SIZE = 73


def counter_bytes() -> Callable[[int], bytes]:
    """A deterministic random source: 0x01, 0x02, ... (for golden bytes)."""
    state = iter(range(1, 10**6))
    return lambda size: bytes(next(state) % 256 for _ in range(size))


@pytest.fixture(scope="module")
def sealed() -> bytes:
    """One encrypted key file under cheap parameters, shared by the byte-flipping tests."""
    return encode_encrypted(SEED, PASSWORD, CHEAP)


# --- codec ----------------------------------------------------------------------------------


def test_encrypted_round_trip(sealed: bytes) -> None:
    """Encrypting then decrypting with the same password gives the seed back."""
    assert len(sealed) == ENCRYPTED_SIZE == 121
    assert sealed.startswith(MAGIC_ENCRYPTED)
    assert is_encrypted(sealed)
    assert decode(sealed, PASSWORD) == SEED


def test_encrypted_layout_is_exact() -> None:
    """Header fields sit where SPEC.md says: version, kdf id, log2 n, r, p, salt, nonce."""
    data = encode_encrypted(SEED, PASSWORD, CHEAP, counter_bytes())
    assert data[:8] == b"ENSK-ENC"
    assert list(data[8:13]) == [2, 1, 10, 8, 1]
    assert data[13:29] == bytes(range(1, 17))
    assert data[29:41] == bytes(range(17, 29))
    assert decode(data, PASSWORD) == SEED


GOLDEN_SEALED = bytes.fromhex(
    "454e534b2d454e4302010a08010102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
    "412d90597e1e27a7d6e98b44da32a5b3"
    "f2db9cdc01027ead441540e53f4152af"
    "10bf65b49e307f5d02043a0fa6b02642177fa6f87419e92eb5426ecbb2f24157b909535ee71d5112d8d51c01bba5a84d")
#: Written by earlier releases; still read.
GOLDEN_SEALED_V1 = bytes.fromhex(
    "454e534b2d454e4301010a08010102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
    "412d90597e1e27a7d6e98b44da32a5b3"
    "10bf65b49e307f5d02043a0fa6b02642177fa6f87419e92eb5426ecbb2f24157ef8b6196177cbfe4e60513266d0a9287")
GOLDEN_PLAIN = bytes.fromhex(
    "454e534b2d52415701000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "29b3993bdf5cd73f10004f8666295d20")


def _hkdf_expand_one_block(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand for L <= 32, written out from the RFC."""
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def test_golden_vectors() -> None:
    """Fixed inputs give the exact bytes printed in SPEC.md §2.2."""
    assert encode_encrypted(SEED, PASSWORD, CHEAP, counter_bytes()) == GOLDEN_SEALED
    assert encode_plaintext(SEED) == GOLDEN_PLAIN
    assert decode(GOLDEN_SEALED, PASSWORD) == SEED
    assert decode(GOLDEN_SEALED_V1, PASSWORD) == SEED


def test_spec_prints_the_golden_vectors() -> None:
    """SPEC.md §2.2 shows exactly these bytes, so other tools can check themselves against it."""
    spec = (Path(__file__).resolve().parents[1] / "SPEC.md").read_text()
    for vector in (GOLDEN_SEALED, GOLDEN_SEALED_V1, GOLDEN_PLAIN):
        assert f"`{vector.hex()}`" in spec


def test_golden_vector_follows_the_spec_recipe() -> None:
    """Rebuilding the file from the SPEC text with other primitives gives the same bytes."""
    header = GOLDEN_SEALED[:V2_HEADER_SIZE]
    salt, nonce, check = header[13:29], header[29:41], header[41:57]
    assert header[57:] == hashlib.blake2b(header[:57], digest_size=16,
                                          key=b"ensemblenet/keyfile/v2/header").digest()
    master = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**10, r=8, p=1, dklen=32)
    assert _hkdf_expand_one_block(master, b"ensemblenet/keyfile/v1/check", 16) == check
    key = _hkdf_expand_one_block(master, b"ensemblenet/keyfile/v1/encrypt", 32)
    assert ChaCha20Poly1305(key).decrypt(nonce, GOLDEN_SEALED[V2_HEADER_SIZE:], header) == SEED
    v1_header = GOLDEN_SEALED_V1[:HEADER_SIZE]
    assert ChaCha20Poly1305(key).decrypt(nonce, GOLDEN_SEALED_V1[HEADER_SIZE:], v1_header) == SEED
    body = GOLDEN_PLAIN[:41]
    digest = hashlib.blake2b(body, digest_size=16, key=b"ensemblenet/keyfile/v1/plain").digest()
    assert GOLDEN_PLAIN[41:] == digest


def test_fresh_salt_and_nonce_each_time() -> None:
    """Two encryptions of the same seed and password differ."""
    assert encode_encrypted(SEED, PASSWORD, CHEAP) != encode_encrypted(SEED, PASSWORD, CHEAP)


def test_default_parameters_are_stored() -> None:
    """The default KDF is n=2^15, r=8, p=1 and the header records it."""
    assert KdfParams() == KdfParams(n=2**15, r=8, p=1)
    data = encode_encrypted(SEED, PASSWORD)
    assert list(data[10:13]) == [15, 8, 1]
    assert decode(data, PASSWORD) == SEED


def test_unicode_password_is_normalised(sealed: bytes) -> None:
    """Composed and decomposed spellings of the same password open the same file."""
    data = encode_encrypted(SEED, "caf\u00e9", CHEAP)
    assert decode(data, "cafe\u0301") == SEED


@pytest.mark.parametrize("password", ["correct horsE", "", "correct horse ", "x" * 1000])
def test_wrong_password(sealed: bytes, password: str) -> None:
    """A wrong password raises WrongPasswordError, not a corruption error."""
    with pytest.raises(WrongPasswordError, match="wrong password"):
        decode(sealed, password)


def test_missing_password_for_encrypted_file(sealed: bytes) -> None:
    """Decoding an encrypted file without a password asks for one."""
    with pytest.raises(WrongPasswordError, match="no password was given"):
        decode(sealed, None)


def test_truncation_at_every_length(sealed: bytes) -> None:
    """Every proper prefix of an encrypted file is reported as truncated."""
    for length in range(len(sealed)):
        with pytest.raises(KeyfileCorruptError, match="truncated"):
            decode(sealed[:length], PASSWORD)


def test_trailing_bytes(sealed: bytes) -> None:
    """Extra bytes after the ciphertext make it not a key file."""
    with pytest.raises(KeyfileCorruptError, match="trailing bytes"):
        decode(sealed + b"\x00", PASSWORD)


def test_every_ciphertext_byte_flip_is_tampering(sealed: bytes) -> None:
    """Flipping any ciphertext or tag byte is detected as tampering (password still right)."""
    for pos in range(V2_HEADER_SIZE, len(sealed)):
        damaged = sealed[:pos] + bytes([sealed[pos] ^ 0x01]) + sealed[pos + 1:]
        with pytest.raises(KeyfileCorruptError, match="tampered"):
            decode(damaged, PASSWORD)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_header_byte_flip_is_damage_not_a_wrong_password(sealed: bytes, mask: int) -> None:
    """Version 2: flipping any header byte, checksum included, is reported as a damaged file
    (SPEC §2.2: wrong password, truncation and tampering each give their own error)."""
    for pos in range(V2_HEADER_SIZE):
        damaged = sealed[:pos] + bytes([sealed[pos] ^ mask]) + sealed[pos + 1:]
        with pytest.raises(KeyfileCorruptError) as info:
            decode(damaged, PASSWORD)
        if pos >= 10:  # past magic, version and KDF id: the checksum speaks
            assert "header is damaged" in str(info.value)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_version_1_header_flips_fail(mask: int) -> None:
    """Version 1 (still read): a flipped header byte never gives the seed; a damaged salt or key
    check cannot be told from a wrong password there, which is why version 2 exists."""
    sealed = GOLDEN_SEALED_V1
    outcomes: dict[int, type[KeyfileError]] = {}
    for pos in range(HEADER_SIZE):
        damaged = sealed[:pos] + bytes([sealed[pos] ^ mask]) + sealed[pos + 1:]
        with pytest.raises((KeyfileCorruptError, WrongPasswordError)) as info:
            decode(damaged, PASSWORD)
        outcomes[pos] = type(info.value)
    # The nonce is not an input to the key check, so only the AEAD catches it: tampering.
    assert {outcomes[pos] for pos in range(29, 41)} == {KeyfileCorruptError}
    # Salt and stored check feed the key check: indistinguishable from a wrong password.
    assert {outcomes[pos] for pos in [*range(13, 29), *range(41, 57)]} == {WrongPasswordError}
    # Magic, version and KDF id are structural.
    assert {outcomes[pos] for pos in range(10)} == {KeyfileCorruptError}


def test_unknown_version_says_upgrade(sealed: bytes) -> None:
    """A newer format version is rejected with advice rather than a generic error."""
    with pytest.raises(KeyfileCorruptError, match=r"version 3 is not supported.*upgrade"):
        decode(sealed[:8] + b"\x03" + sealed[9:], PASSWORD)


def test_hostile_kdf_parameters_are_refused_before_work(sealed: bytes) -> None:
    """A header asking for 2^20 * 32 * 128 bytes of scrypt memory is refused as corrupt."""
    fields = sealed[:10] + bytes([20, 32, 1]) + sealed[13:HEADER_SIZE]
    checksum = hashlib.blake2b(fields, digest_size=16, key=b"ensemblenet/keyfile/v2/header")
    hostile = fields + checksum.digest() + sealed[V2_HEADER_SIZE:]
    with pytest.raises(KeyfileCorruptError, match="unacceptable KDF parameters"):
        decode(hostile, PASSWORD)


def test_not_a_key_file() -> None:
    """Text that is not a key file says so."""
    with pytest.raises(KeyfileCorruptError, match="not a key file"):
        decode(b"-----BEGIN OPENSSH PRIVATE KEY-----\n", PASSWORD)
    with pytest.raises(KeyfileCorruptError, match="not a key file"):
        decode(b"x", PASSWORD)


def test_plaintext_round_trip() -> None:
    """A plaintext key file round-trips with or without a password argument."""
    data = encode_plaintext(SEED)
    assert len(data) == PLAINTEXT_SIZE == 57
    assert data.startswith(MAGIC_PLAINTEXT)
    assert not is_encrypted(data)
    assert decode(data, None) == SEED
    assert decode(data, "ignored") == SEED


def test_plaintext_truncation_and_bit_rot() -> None:
    """Every prefix of a plaintext file is truncated; any flipped byte fails the checksum."""
    data = encode_plaintext(SEED)
    for length in range(len(data)):
        with pytest.raises(KeyfileCorruptError, match="truncated"):
            decode(data[:length], None)
    for pos in range(9, len(data)):
        damaged = data[:pos] + bytes([data[pos] ^ 0x04]) + data[pos + 1:]
        with pytest.raises(KeyfileCorruptError, match="checksum"):
            decode(damaged, None)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_encoders_reject_bad_seed_length(seed: bytes) -> None:
    """Only 32-byte seeds are stored."""
    with pytest.raises(ConfigError, match="32 bytes"):
        encode_plaintext(seed)
    with pytest.raises(ConfigError, match="32 bytes"):
        encode_encrypted(seed, PASSWORD, CHEAP)


def test_empty_password_is_refused() -> None:
    """An encrypted file with an empty password would be plaintext in disguise."""
    with pytest.raises(ConfigError, match="non-empty password"):
        encode_encrypted(SEED, "", CHEAP)


@pytest.mark.parametrize(("n", "r", "p"), [(2**9, 8, 1), (3 * 2**10, 8, 1), (2**21, 8, 1),
                                           (2**15, 0, 1), (2**15, 8, 0), (2**20, 8, 1)])
def test_kdf_params_out_of_range(n: int, r: int, p: int) -> None:
    """KdfParams refuses weak, malformed or excessive scrypt costs."""
    with pytest.raises(ConfigError, match="scrypt"):
        KdfParams(n=n, r=r, p=p)


_VALID_PLAIN = encode_plaintext(SEED)
_VALID_SEALED = encode_encrypted(SEED, PASSWORD, CHEAP, counter_bytes())


@st.composite
def _mutated_sealed(draw: st.DrawFn) -> bytes:
    """A valid cheap encrypted file with random bytes overwritten after the KDF parameters."""
    data = bytearray(_VALID_SEALED)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(13, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda tail: MAGIC_ENCRYPTED + b"\x01" + tail),
    st.binary(max_size=60).map(lambda tail: MAGIC_PLAINTEXT + b"\x01" + tail),
    st.binary(min_size=48, max_size=48).map(lambda tail: _VALID_SEALED[:57] + tail),
    st.binary(min_size=48, max_size=48).map(lambda tail: _VALID_PLAIN[:9] + tail),
    _mutated_sealed(),
))
def test_decode_fuzz_raises_only_keyfile_errors(data: bytes) -> None:
    """Decoding arbitrary bytes returns a 32-byte seed or raises a KeyfileError subclass."""
    try:
        seed = decode(data, PASSWORD)
    except KeyfileError:
        return
    assert len(seed) == 32


# --- files ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Run with umask 0, the worst case: only the mode passed to os.open protects the file."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_written_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    """save_seed creates a 0600 file that load_seed opens."""
    path = tmp_path / "coldkey"
    keyfile.save_seed(path, SEED, PASSWORD, CHEAP)
    assert _mode(path) == 0o600
    assert keyfile.load_seed(path, PASSWORD) == SEED
    assert keyfile.file_is_encrypted(path)
    assert os.listdir(tmp_path) == ["coldkey"]  # no temporary file left behind


@pytest.mark.usefixtures("umask_zero")
def test_temp_file_is_never_world_readable(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Under umask 0 the temporary file is 0600 while being written, and so is the result."""
    seen: list[int] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            seen.append(stat.S_IMODE(info.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    path = tmp_path / "hot"
    keyfile.write_keyfile(path, encode_plaintext(SEED))
    assert seen == [0o600]
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_loose_mode_on_read(tmp_path: Path, mode: int) -> None:
    """A key file others can access is refused with the chmod command that fixes it."""
    path = tmp_path / "coldkey"
    keyfile.save_seed(path, SEED, None)
    path.chmod(mode)
    with pytest.raises(KeyfilePermissionError, match=f"mode 0{mode:o}.*chmod 600 {path}"):
        keyfile.load_seed(path, None)
    path.chmod(0o600)
    assert keyfile.load_seed(path, None) == SEED


def test_no_overwrite_without_flag(tmp_path: Path) -> None:
    """An existing key is never replaced unless overwrite=True, and nothing is left behind."""
    path = tmp_path / "coldkey"
    keyfile.save_seed(path, SEED, None)
    other = bytes(32)
    with pytest.raises(KeyfileExistsError, match="refusing to overwrite"):
        keyfile.save_seed(path, other, None)
    assert keyfile.load_seed(path, None) == SEED
    keyfile.save_seed(path, other, None, overwrite=True)
    assert keyfile.load_seed(path, None) == other
    assert sorted(os.listdir(tmp_path)) == ["coldkey"]


def test_errors_name_the_file(tmp_path: Path) -> None:
    """Errors from load_seed keep their class and say which file they are about."""
    path = tmp_path / "coldkey"
    keyfile.save_seed(path, SEED, PASSWORD, CHEAP)
    with pytest.raises(WrongPasswordError, match=f"^{path}: wrong password"):
        keyfile.load_seed(path, "nope")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(KeyfileCorruptError, match=f"^{path}: key file is truncated"):
        keyfile.load_seed(path, PASSWORD)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """Missing files and directories raise KeyfileError, not OSError."""
    with pytest.raises(KeyfileError, match="no such file"):
        keyfile.read_keyfile(tmp_path / "absent")
    with pytest.raises(KeyfileError, match="no such file"):
        keyfile.write_keyfile(tmp_path / "no" / "dir" / "key", b"x")


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    """A directory at the key path is reported, not read."""
    (tmp_path / "key").mkdir(mode=0o700)
    with pytest.raises(KeyfileError):
        keyfile.read_keyfile(tmp_path / "key")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path: Path) -> None:
    """Writing into a read-only directory raises KeyfilePermissionError."""
    directory = tmp_path / "ro"
    directory.mkdir(mode=0o500)
    try:
        with pytest.raises(KeyfilePermissionError, match="permission denied"):
            keyfile.write_keyfile(directory / "key", b"x")
    finally:
        directory.chmod(0o700)


def test_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    """A large file is rejected after reading only a few bytes past the largest key size."""
    path = tmp_path / "big"
    path.write_bytes(MAGIC_PLAINTEXT + b"\x01" + bytes(10**6))
    path.chmod(0o600)
    assert len(keyfile.read_keyfile(path)) == ENCRYPTED_SIZE + 1
    with pytest.raises(KeyfileCorruptError, match="trailing bytes"):
        keyfile.load_seed(path, None)
