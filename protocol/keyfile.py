"""Key files: the on-disk form of one 32-byte Ed25519 seed.

Two formats, both fixed-size and versioned (byte layouts in SPEC.md, "Key files"):

* **encrypted** (magic ``ENSK-ENC``): scrypt derives a master key from the password and a
  random per-file salt; HKDF splits it into an encryption key and a 16-byte *key check*;
  ChaCha20-Poly1305 encrypts the seed with the whole header as associated data. Version 2 (the
  one written) adds a checksum of the header, so a damaged header is told apart from a wrong
  password; version 1 files are still read.
* **plaintext** (magic ``ENSK-RAW``): the seed and a BLAKE2b checksum, only for hotkeys whose
  operator asked for unattended start.

The codec (:func:`encode_encrypted`, :func:`encode_plaintext`, :func:`decode`,
:func:`is_encrypted`) is pure: bytes in, bytes out, randomness injected. The file helpers
(:func:`write_keyfile`, :func:`read_keyfile`, :func:`save_seed`, :func:`load_seed`) write
atomically with mode 0600 from creation and refuse to read files other users can access.

Every failure is a :class:`~protocol.errors.KeyfileError` subclass, never a foreign exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocol.errors import (
    ConfigError,
    KeyfileCorruptError,
    KeyfileError,
    KeyfileExistsError,
    KeyfilePermissionError,
    WrongPasswordError,
)
from protocol.keys import SEED_SIZE

MAGIC_ENCRYPTED = b"ENSK-ENC"
MAGIC_PLAINTEXT = b"ENSK-RAW"
FORMAT_VERSION = 1  # of plaintext files
ENCRYPTED_VERSION = 2  # written; version 1 is still read
KDF_SCRYPT = 1
SALT_SIZE = 16
NONCE_SIZE = 12
KEY_CHECK_SIZE = 16
TAG_SIZE = 16
PLAIN_CHECKSUM_SIZE = 16

#: Domain-separation labels: a key derived for one purpose is useless for the other.
HKDF_INFO_ENCRYPT = b"ensemblenet/keyfile/v1/encrypt"
HKDF_INFO_CHECK = b"ensemblenet/keyfile/v1/check"
PLAIN_CHECKSUM_KEY = b"ensemblenet/keyfile/v1/plain"
HEADER_CHECKSUM_KEY = b"ensemblenet/keyfile/v2/header"
HEADER_CHECKSUM_SIZE = 16

#: magic, version, kdf id, log2(n), r, p, salt, nonce, key check: all of it is AEAD data.
_ENC_HEADER = struct.Struct(f">8sBBBBB{SALT_SIZE}s{NONCE_SIZE}s{KEY_CHECK_SIZE}s")
ENCRYPTED_SIZE_V1 = _ENC_HEADER.size + SEED_SIZE + TAG_SIZE
#: Version 2 puts a checksum of the header between the header and the ciphertext.
ENCRYPTED_SIZE = ENCRYPTED_SIZE_V1 + HEADER_CHECKSUM_SIZE
#: magic, version, seed; followed by the checksum of these bytes.
_PLAIN_BODY = struct.Struct(f">8sB{SEED_SIZE}s")
PLAINTEXT_SIZE = _PLAIN_BODY.size + PLAIN_CHECKSUM_SIZE
_MAGIC_SIZE = len(MAGIC_ENCRYPTED)
#: Enough to tell "too long" from "just right" without reading a huge file into memory.
_READ_LIMIT = max(ENCRYPTED_SIZE, PLAINTEXT_SIZE) + 1

#: Below 2^10 scrypt costs a password guesser next to nothing; only tests go this low.
MIN_LOG2_N = 10
MAX_LOG2_N = 20
MAX_R = 32
MAX_P = 16
#: A tampered or hostile header must not make us allocate more than 8x the default's 32 MiB...
MAX_KDF_MEMORY = 256 * 2**20
#: ...nor work more than 8x the default (n*r*p = 2^18): about a second on a laptop.
MAX_KDF_WORK = 2**21

#: Permission bits that let anyone but the owner near a key file.
_OTHERS_MASK = 0o077
KEYFILE_MODE = 0o600


def kdf_problem(n: int, r: int, p: int) -> str | None:
    """Return why scrypt parameters are unacceptable, or ``None`` if they are fine."""
    if n < 2**MIN_LOG2_N or n > 2**MAX_LOG2_N or n & (n - 1):
        return f"scrypt n must be a power of two from 2^{MIN_LOG2_N} to 2^{MAX_LOG2_N}, got {n}"
    if not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
        return f"scrypt r must be 1..{MAX_R} and p 1..{MAX_P}, got r={r} p={p}"
    if 128 * n * r > MAX_KDF_MEMORY or n * r * p > MAX_KDF_WORK:
        return f"scrypt n={n} r={r} p={p} exceeds the memory or work limit"
    return None


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost parameters. The default (n=2^15, r=8, p=1) takes ~0.1 s and 32 MiB.

    Raises:
        ConfigError: the parameters are outside the limits :func:`kdf_problem` checks.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        problem = kdf_problem(self.n, self.r, self.p)
        if problem is not None:
            raise ConfigError(problem)

    @property
    def log2_n(self) -> int:
        """``log2(n)``, the form stored in the header."""
        return self.n.bit_length() - 1


DEFAULT_KDF = KdfParams()

RandomBytes = Callable[[int], bytes]


# --- codec ----------------------------------------------------------------------------------


def _password_bytes(password: str) -> bytes:
    # NFC so the same password typed on macOS (decomposed) and Linux (composed) opens the file.
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _derive(password: str, salt: bytes, kdf: KdfParams) -> tuple[bytes, bytes]:
    """Return ``(encryption_key, key_check)`` for a password, salt and cost."""
    master = Scrypt(salt=salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(
        _password_bytes(password))
    enc_key = HKDFExpand(hashes.SHA256(), 32, HKDF_INFO_ENCRYPT).derive(master)
    check = HKDFExpand(hashes.SHA256(), KEY_CHECK_SIZE, HKDF_INFO_CHECK).derive(master)
    return enc_key, check


def encode_encrypted(seed: bytes, password: str, kdf: KdfParams = DEFAULT_KDF,
                     random_bytes: RandomBytes = os.urandom) -> bytes:
    """Return the encrypted key file bytes of ``seed`` under ``password``.

    ``random_bytes`` supplies the salt and nonce (inject a fixed source for golden vectors).

    Raises:
        ConfigError: the seed is not 32 bytes or the password is empty.
    """
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"a seed is {SEED_SIZE} bytes, got {len(seed)}")
    if not password:
        raise ConfigError("an encrypted key file needs a non-empty password")
    salt, nonce = random_bytes(SALT_SIZE), random_bytes(NONCE_SIZE)
    enc_key, check = _derive(password, salt, kdf)
    header = _ENC_HEADER.pack(MAGIC_ENCRYPTED, ENCRYPTED_VERSION, KDF_SCRYPT, kdf.log2_n,
                              kdf.r, kdf.p, salt, nonce, check)
    header += _header_checksum(header)
    return header + ChaCha20Poly1305(enc_key).encrypt(nonce, seed, header)


def _header_checksum(header: bytes) -> bytes:
    return hashlib.blake2b(header, digest_size=HEADER_CHECKSUM_SIZE,
                           key=HEADER_CHECKSUM_KEY).digest()


def _plain_checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=PLAIN_CHECKSUM_SIZE, key=PLAIN_CHECKSUM_KEY).digest()


def encode_plaintext(seed: bytes) -> bytes:
    """Return the unencrypted key file bytes of ``seed`` (checksummed, not secret).

    Raises:
        ConfigError: the seed is not 32 bytes.
    """
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"a seed is {SEED_SIZE} bytes, got {len(seed)}")
    body = _PLAIN_BODY.pack(MAGIC_PLAINTEXT, FORMAT_VERSION, seed)
    return body + _plain_checksum(body)


def is_encrypted(data: bytes) -> bool:
    """Return whether key file bytes are the encrypted format (reads the header only).

    Raises:
        KeyfileCorruptError: the bytes are truncated, not a key file, or an unknown version.
    """
    if len(data) < _MAGIC_SIZE:
        if any(magic.startswith(data) for magic in (MAGIC_ENCRYPTED, MAGIC_PLAINTEXT)):
            raise _truncated(len(data), _MAGIC_SIZE + 1)
        raise KeyfileCorruptError("not a key file (unknown magic bytes)")
    magic = data[:_MAGIC_SIZE]
    if magic not in (MAGIC_ENCRYPTED, MAGIC_PLAINTEXT):
        raise KeyfileCorruptError("not a key file (unknown magic bytes)")
    encrypted = magic == MAGIC_ENCRYPTED
    if len(data) == _MAGIC_SIZE:
        raise _truncated(len(data), ENCRYPTED_SIZE if encrypted else PLAINTEXT_SIZE)
    known = (1, ENCRYPTED_VERSION) if encrypted else (FORMAT_VERSION,)
    if data[_MAGIC_SIZE] not in known:
        raise KeyfileCorruptError(
            f"key file format version {data[_MAGIC_SIZE]} is not supported "
            f"(this ensemble reads versions {', '.join(map(str, known))}); upgrade ensemble")
    return magic == MAGIC_ENCRYPTED


def _truncated(got: int, expected: int) -> KeyfileCorruptError:
    return KeyfileCorruptError(f"key file is truncated ({got} of {expected} bytes)")


def _check_size(data: bytes, expected: int) -> None:
    if len(data) < expected:
        raise _truncated(len(data), expected)
    if len(data) > expected:
        raise KeyfileCorruptError(
            f"not a key file (trailing bytes: {len(data)} bytes, expected {expected})")


def decode(data: bytes, password: str | None) -> bytes:
    """Return the 32-byte seed stored in key file bytes.

    A plaintext file ignores ``password``.

    Raises:
        WrongPasswordError: the file is intact but ``password`` does not open it (or is ``None``
            for an encrypted file).
        KeyfileCorruptError: the file is truncated, not a key file, has unsupported parameters,
            or was tampered with (the message says which).
    """
    if not is_encrypted(data):
        return _decode_plaintext(data)
    if password is None:
        raise WrongPasswordError("the key file is encrypted and no password was given")
    return _decode_encrypted(data, password)


def _decode_plaintext(data: bytes) -> bytes:
    _check_size(data, PLAINTEXT_SIZE)
    body, checksum = data[:_PLAIN_BODY.size], data[_PLAIN_BODY.size:]
    if not hmac.compare_digest(checksum, _plain_checksum(body)):
        raise KeyfileCorruptError("key file is corrupt (checksum mismatch)")
    _magic, _version, seed = _PLAIN_BODY.unpack(body)
    return bytes(seed)


def _decode_encrypted(data: bytes, password: str) -> bytes:
    version = data[_MAGIC_SIZE]
    _check_size(data, ENCRYPTED_SIZE if version == ENCRYPTED_VERSION else ENCRYPTED_SIZE_V1)
    fields = data[:_ENC_HEADER.size]
    header = fields
    if version == ENCRYPTED_VERSION:
        # Checked before any KDF work: a damaged salt, parameter or key check would otherwise
        # read as a wrong password (or as unacceptable parameters) and send the user guessing.
        header = data[:_ENC_HEADER.size + HEADER_CHECKSUM_SIZE]
        if not hmac.compare_digest(header[_ENC_HEADER.size:], _header_checksum(fields)):
            raise KeyfileCorruptError(
                "key file header is damaged (checksum mismatch); restore it from your backup")
    _magic, _ver, kdf_id, log2_n, r, p, salt, nonce, stored_check = _ENC_HEADER.unpack(fields)
    if kdf_id != KDF_SCRYPT:
        raise KeyfileCorruptError(f"key file uses unknown KDF id {kdf_id}")
    problem = kdf_problem(2**log2_n, r, p)
    if problem is not None:
        raise KeyfileCorruptError(f"key file has unacceptable KDF parameters: {problem}")
    enc_key, check = _derive(password, salt, KdfParams(2**log2_n, r, p))
    # An AEAD failure alone cannot tell a wrong password from a damaged file, and users need
    # to know which ("try again" vs "restore your backup"). So the header carries a key check:
    # 16 bytes HKDF-derived from the scrypt output under its own label, independent of the
    # encryption key. It gives a guesser nothing new (each guess still costs one scrypt, as
    # trying the AEAD would) and a false match has probability 2^-128. Check mismatch means
    # wrong password (in version 1 files also a damaged salt/params/check, which only version
    # 2's header checksum tells apart); check match with AEAD failure means the header or
    # ciphertext was altered after writing.
    if not hmac.compare_digest(check, stored_check):
        raise WrongPasswordError("wrong password for this key file")
    try:
        return ChaCha20Poly1305(enc_key).decrypt(nonce, data[len(header):], header)
    except InvalidTag:
        raise KeyfileCorruptError(
            "key file was tampered with or damaged (password is right, integrity check failed)"
        ) from None


# --- files ----------------------------------------------------------------------------------


def write_keyfile(path: Path, data: bytes, *, overwrite: bool = False,
                  mode: int = KEYFILE_MODE) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the whole new one.

    The temporary file is created in the same directory with ``mode`` (default 0600) and
    ``O_EXCL``, so it is never readable by others, not even for an instant; the data is fsynced,
    installed, and the directory fsynced so the name survives a crash.

    Raises:
        KeyfileExistsError: ``path`` exists and ``overwrite`` is false.
        KeyfilePermissionError: the directory is not writable.
        KeyfileError: any other operating-system failure.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            _write_new(tmp, data, mode)
            _install(tmp, path, overwrite=overwrite)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise _translate(exc, "write", path) from exc


def _write_new(tmp: Path, data: bytes, mode: int) -> None:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _install(tmp: Path, path: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    # os.replace would silently clobber a key created between an exists() check and the
    # rename, and a clobbered coldkey is lost funds. A hard link is an atomic "create only if
    # absent"; the finally-unlink of the temporary name then leaves just ``path``.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyfileExistsError(f"refusing to overwrite existing key file {path}") from None
    except OSError:
        # Some filesystems (FAT, some network mounts) have no hard links: fall back to a
        # check-then-rename, which is racy only against a concurrent writer of the same name.
        if path.exists():
            raise KeyfileExistsError(f"refusing to overwrite existing key file {path}") from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync; NTFS journals renames.
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _translate(exc: OSError, verb: str, path: Path) -> KeyfileError:
    if isinstance(exc, PermissionError):
        return KeyfilePermissionError(f"cannot {verb} {path}: permission denied")
    if isinstance(exc, FileNotFoundError):
        return KeyfileError(f"cannot {verb} {path}: no such file or directory")
    return KeyfileError(f"cannot {verb} {path}: {exc.strerror or exc}")


def read_keyfile(path: Path) -> bytes:
    """Return the bytes of the key file at ``path`` after checking it is private.

    Reads at most a little more than the largest valid key file, so a huge file costs nothing.

    Raises:
        KeyfilePermissionError: group or others have any access (the message says how to fix
            it), or the file cannot be opened for lack of permission.
        KeyfileCorruptError: ``path`` is not a regular file.
        KeyfileError: the file does not exist or cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            _check_private(path, info)
            return handle.read(_READ_LIMIT)
    except OSError as exc:
        raise _translate(exc, "read", path) from exc


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyfileCorruptError(f"{path} is not a regular file")
    # fstat on the open descriptor, not stat on the name, so the file checked is the file read.
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & _OTHERS_MASK:
        raise KeyfilePermissionError(
            f"key file {path} is accessible by other users (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}")


def save_seed(path: Path, seed: bytes, password: str | None, kdf: KdfParams = DEFAULT_KDF, *,
              overwrite: bool = False, random_bytes: RandomBytes = os.urandom) -> None:
    """Encode ``seed`` (encrypted, or plaintext when ``password`` is ``None``) and write it.

    Raises:
        ConfigError: bad seed length or empty password.
        KeyfileError: as :func:`write_keyfile`.
    """
    if password is None:
        data = encode_plaintext(seed)
    else:
        data = encode_encrypted(seed, password, kdf, random_bytes)
    write_keyfile(path, data, overwrite=overwrite)


def load_seed(path: Path, password: str | None) -> bytes:
    """Read and decode the key file at ``path``; errors name the file.

    Raises:
        KeyfileError: as :func:`read_keyfile` and :func:`decode`, same subclass, with the path.
    """
    data = read_keyfile(path)
    try:
        return decode(data, password)
    except KeyfileError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


def file_is_encrypted(path: Path) -> bool:
    """Return whether the key file at ``path`` is encrypted (no password needed).

    Raises:
        KeyfileError: as :func:`read_keyfile` and :func:`is_encrypted`, with the path.
    """
    data = read_keyfile(path)
    try:
        return is_encrypted(data)
    except KeyfileError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
