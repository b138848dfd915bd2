"""Wallets: one coldkey and any number of named hotkeys, stored under a root directory.

The coldkey owns funds and stake and signs ledger operations on them; it is always encrypted.
Hotkeys sign network traffic and weights; one may be stored unencrypted when its operator asks,
so a miner or validator can start unattended. Layout under ``root``::

    <wallet>/coldkey              encrypted key file (protocol.keyfile)
    <wallet>/coldkeypub.txt       the coldkey's address and a newline
    <wallet>/hotkeys/<name>       key file, encrypted or plaintext
    <wallet>/hotkeys/<name>.pub   the hotkey's address and a newline

The ``.txt``/``.pub`` files let listing and showing work without a password. The root is always
passed in; only the CLI consults the environment (through :func:`default_wallet_root`).
Constructing a :class:`Wallet` does no I/O; nothing is created until ``create``/``new_hotkey``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from protocol import keyfile
from protocol.errors import (
    AddressError,
    ConfigError,
    IdentityError,
    KeyfileCorruptError,
    KeyfileError,
    KeyfileExistsError,
    KeyfilePermissionError,
)
from protocol.keyfile import DEFAULT_KDF, KdfParams, RandomBytes
from protocol.keys import SEED_SIZE, Keypair, decode_address

WALLET_PATH_ENV = "ENSEMBLE_WALLET_PATH"
COLDKEY_FILE = "coldkey"
COLDKEYPUB_FILE = "coldkeypub.txt"
HOTKEYS_DIR = "hotkeys"
PUB_SUFFIX = ".pub"
#: Wallet directories hold secrets: owner-only, like ~/.ssh.
DIR_MODE = 0o700
#: Public address files may be read by anyone (e.g. a monitoring user).
PUBLIC_FILE_MODE = 0o644

#: Letters, digits, ``_``, ``.``, ``-``; 1..64 characters; no leading dot (hidden files, ``..``).
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def validate_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid wallet or hotkey name.

    Raises:
        ConfigError: the name is empty, too long, starts with a dot, or has other characters.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid {what} name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "not starting with '.'")
    return name


def _validate_hotkey_name(name: str) -> str:
    validate_name(name, "hotkey")
    # hotkeys/<name>.pub holds the address of hotkeys/<name>; a hotkey called "x.pub" would
    # collide with the public file of hotkey "x".
    if name.endswith(PUB_SUFFIX):
        raise ConfigError(f"invalid hotkey name {name!r}: it must not end in {PUB_SUFFIX!r}")
    return name


def default_wallet_root(env: Mapping[str, str]) -> Path:
    """Return the wallet root: ``$ENSEMBLE_WALLET_PATH`` if set, else ``~/.ensemble/wallets``.

    ``env`` is the environment to consult (the CLI passes ``os.environ``); ``HOME`` in it, if
    present, locates ``~``. Nothing is created.
    """
    override = env.get(WALLET_PATH_ENV)
    if override:
        return Path(override).expanduser()
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".ensemble" / "wallets"


def list_wallets(root: Path) -> list[str]:
    """Return the sorted names of the wallets (directories holding a coldkey) under ``root``.

    A missing root has no wallets. Entries with invalid names are ignored.

    Raises:
        KeyfilePermissionError: ``root`` cannot be listed.
    """
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyfilePermissionError(f"cannot list wallets in {root}: {exc.strerror}") from exc
    return [name for name in entries
            if _NAME.fullmatch(name) and (root / name / COLDKEY_FILE).is_file()]


def _keypair(seed: bytes | None, random_bytes: RandomBytes) -> Keypair:
    return Keypair(seed if seed is not None else random_bytes(SEED_SIZE))


def _make_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700 (``mkdir -p`` would give parents the
    umask's mode, and a world-readable wallet root lists every wallet's name)."""
    missing = []
    try:
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            missing.append(ancestor)
            ancestor = ancestor.parent
        for directory in reversed(missing):
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise KeyfilePermissionError(f"cannot create directory {path}: {exc.strerror}") from exc


def _write_address(path: Path, address: str) -> None:
    keyfile.write_keyfile(path, f"{address}\n".encode("ascii"), overwrite=True,
                          mode=PUBLIC_FILE_MODE)


def _read_address(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise IdentityError(f"{what} has no public address file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyfileError(f"cannot read {path}: {exc}") from exc
    try:
        decode_address(text)
    except AddressError as exc:
        raise AddressError(f"{path}: {exc}") from exc
    return text


def _check_matches(keypair: Keypair, pub_path: Path, what: str) -> None:
    """Refuse a key whose public file names another key: one of the two was swapped."""
    if pub_path.exists():
        recorded = _read_address(pub_path, what)
        if recorded != keypair.address:
            raise KeyfileCorruptError(
                f"{what} key is {keypair.address} but {pub_path} says {recorded}; "
                "one of the two files was replaced")


class Wallet:
    """One wallet directory, ``root / name``. Construction validates the name, nothing more."""

    __slots__ = ("name", "root")

    def __init__(self, root: Path, name: str) -> None:
        """Name a wallet under ``root`` (no I/O).

        Raises:
            ConfigError: ``name`` is not a valid wallet name.
        """
        self.root = Path(root)
        self.name = validate_name(name, "wallet")

    def __repr__(self) -> str:
        return f"Wallet(root={str(self.root)!r}, name={self.name!r})"

    # --- paths -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The wallet directory."""
        return self.root / self.name

    @property
    def coldkey_path(self) -> Path:
        """The encrypted coldkey file."""
        return self.path / COLDKEY_FILE

    @property
    def coldkeypub_path(self) -> Path:
        """The coldkey's public address file."""
        return self.path / COLDKEYPUB_FILE

    def hotkey_path(self, name: str) -> Path:
        """The key file of hotkey ``name`` (raises :class:`ConfigError` for a bad name)."""
        return self.path / HOTKEYS_DIR / _validate_hotkey_name(name)

    def hotkey_pub_path(self, name: str) -> Path:
        """The public address file of hotkey ``name``."""
        return self.path / HOTKEYS_DIR / (_validate_hotkey_name(name) + PUB_SUFFIX)

    # --- coldkey -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """Return whether this wallet has a coldkey file."""
        return self.coldkey_path.is_file()

    def create(self, password: str, kdf: KdfParams = DEFAULT_KDF, *, seed: bytes | None = None,
               random_bytes: RandomBytes = os.urandom) -> Keypair:
        """Create the wallet directory and its encrypted coldkey; return the coldkey.

        ``seed`` imports a known 32-byte seed (development and tests only); otherwise a fresh
        key comes from ``random_bytes``.

        Raises:
            KeyfileExistsError: the wallet already has a coldkey.
            ConfigError: empty password or bad seed.
            KeyfileError: the files cannot be written.
        """
        if self.exists():
            raise KeyfileExistsError(f"wallet '{self.name}' already exists at {self.path}")
        pair = _keypair(seed, random_bytes)
        data = keyfile.encode_encrypted(pair.seed, password, kdf, random_bytes)
        _make_dir(self.path)
        keyfile.write_keyfile(self.coldkey_path, data)
        _write_address(self.coldkeypub_path, pair.address)
        return pair

    def coldkey(self, password: str) -> Keypair:
        """Decrypt and return the coldkey.

        Raises:
            WrongPasswordError, KeyfileCorruptError, KeyfilePermissionError: see protocol.keyfile.
            KeyfileCorruptError: also when coldkeypub.txt names a different key.
            IdentityError: the wallet does not exist.
        """
        self._require_exists()
        pair = Keypair(keyfile.load_seed(self.coldkey_path, password))
        _check_matches(pair, self.coldkeypub_path, f"wallet '{self.name}' coldkey")
        return pair

    def coldkey_address(self) -> str:
        """Return the coldkey's address from coldkeypub.txt (no password needed).

        Raises:
            IdentityError: the file is missing; AddressError: it holds no valid address.
        """
        return _read_address(self.coldkeypub_path, f"wallet '{self.name}'")

    def _require_exists(self) -> None:
        if not self.exists():
            raise IdentityError(f"wallet '{self.name}' not found under {self.root}")

    # --- hotkeys -----------------------------------------------------------------------------

    def has_hotkey(self, name: str) -> bool:
        """Return whether hotkey ``name`` has a key file."""
        return self.hotkey_path(name).is_file()

    def new_hotkey(self, name: str, password: str | None, kdf: KdfParams = DEFAULT_KDF, *,
                   seed: bytes | None = None,
                   random_bytes: RandomBytes = os.urandom) -> Keypair:
        """Create hotkey ``name``, encrypted under ``password`` or plaintext when it is ``None``.

        Raises:
            IdentityError: the wallet does not exist.
            ConfigError: bad hotkey name, empty password or bad seed.
            KeyfileExistsError: the hotkey exists already.
            KeyfileError: the files cannot be written.
        """
        self._require_exists()
        path = self.hotkey_path(name)
        if path.exists():
            raise KeyfileExistsError(
                f"hotkey '{name}' already exists in wallet '{self.name}' ({path})")
        pair = _keypair(seed, random_bytes)
        _make_dir(path.parent)
        keyfile.save_seed(path, pair.seed, password, kdf, random_bytes=random_bytes)
        _write_address(self.hotkey_pub_path(name), pair.address)
        return pair

    def hotkey(self, name: str, password: str | None = None) -> Keypair:
        """Return hotkey ``name``; ``password`` is needed only if it is encrypted.

        Raises:
            IdentityError: the wallet or hotkey does not exist.
            WrongPasswordError: wrong or missing password for an encrypted hotkey.
            KeyfileCorruptError, KeyfilePermissionError: see protocol.keyfile.
        """
        self._require_hotkey(name)
        pair = Keypair(keyfile.load_seed(self.hotkey_path(name), password))
        _check_matches(pair, self.hotkey_pub_path(name), f"hotkey '{name}'")
        return pair

    def hotkey_names(self) -> list[str]:
        """Return the sorted names of this wallet's hotkeys (no password needed)."""
        try:
            entries = os.listdir(self.path / HOTKEYS_DIR)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyfilePermissionError(
                f"cannot list hotkeys in {self.path / HOTKEYS_DIR}: {exc.strerror}") from exc
        return sorted(name for name in entries
                      if _NAME.fullmatch(name) and not name.endswith(PUB_SUFFIX))

    def hotkey_address(self, name: str) -> str:
        """Return hotkey ``name``'s address from its ``.pub`` file (no password needed).

        Raises:
            IdentityError: the hotkey or its public file is missing.
        """
        self._require_hotkey(name)
        return _read_address(self.hotkey_pub_path(name), f"hotkey '{name}'")

    def hotkey_encrypted(self, name: str) -> bool:
        """Return whether hotkey ``name`` is stored encrypted (reads the header only).

        Raises:
            IdentityError: the hotkey does not exist; KeyfileError: its file is unreadable.
        """
        self._require_hotkey(name)
        return keyfile.file_is_encrypted(self.hotkey_path(name))

    def _require_hotkey(self, name: str) -> None:
        self._require_exists()
        if not self.has_hotkey(name):
            raise IdentityError(f"hotkey '{name}' not found in wallet '{self.name}'")
