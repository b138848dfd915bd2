"""The validator's persistent state and its file format, written atomically.

File layout (all integers big-endian)::

    magic  b"ENVSTATE"  (8 bytes)
    version            u16 (currently 1)
    digest             SHA-256 of the payload (32 bytes)
    payload            msgpack map (protocol.codec), fields below

A torn or altered file fails the digest check and is reported, never half-loaded. Writes go to
a temporary file in the same directory, are fsynced, renamed over the old file, and the
directory is fsynced, so a crash leaves either the old state or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import codec
from protocol.errors import ConfigError, MalformedError, PayloadTooLargeError
from validators.errors import ValidatorStateError
from validators.sampling import Sampler
from validators.scores import ScoreBook

__all__ = [
    "DEFAULT_RECEIPT_CAPACITY",
    "FORMAT_VERSION",
    "MAGIC",
    "PendingCommit",
    "ReceiptLog",
    "ValidatorState",
    "decode_state",
    "encode_state",
    "load_state",
    "save_state",
]

MAGIC = b"ENVSTATE"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sH32s")
#: 1024 receipts (about 200 bytes each) cover the queries behind the last few weight sets.
DEFAULT_RECEIPT_CAPACITY = 1024
# The file is our own, but the digest check runs before decoding, so these limits only need
# to fit the largest legitimate state: 4096 uids of scores and ~64 Ki receipts.
_LIMITS = codec.Limits(max_body=256 << 20, max_array=1 << 20, max_map=64)


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """A weights commit sent to the ledger, kept until it is revealed.

    Attributes:
        netuid: the subnet.
        digest: the 32-byte commit digest sent to the ledger.
        salt: the secret salt the reveal must repeat.
        uids: the committed uids.
        weights: the committed u16 weights (same length as ``uids``).
        block: the block the commit was made at.

    Raises:
        ValidatorStateError: a field is of the wrong size or range.
    """

    netuid: int
    digest: bytes
    salt: bytes
    uids: tuple[int, ...]
    weights: tuple[int, ...]
    block: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "uids", tuple(self.uids))
        object.__setattr__(self, "weights", tuple(self.weights))
        ok = (_is_uint(self.netuid) and _is_uint(self.block) and isinstance(self.digest, bytes)
              and len(self.digest) == 32 and isinstance(self.salt, bytes)
              and len(self.uids) == len(self.weights) and all(map(_is_uint, self.uids))
              and all(_is_uint(w) and w <= 0xFFFF for w in self.weights))
        if not ok:
            raise ValidatorStateError("pending commit: a field has the wrong type, size or range")

    def to_dict(self) -> dict[str, Any]:
        """A plain msgpack-able map in a fixed field order."""
        return {"netuid": self.netuid, "digest": self.digest, "salt": self.salt,
                "uids": list(self.uids), "weights": list(self.weights), "block": self.block}

    @classmethod
    def from_dict(cls, data: Any) -> PendingCommit:
        """Rebuild from :meth:`to_dict` output (raises :class:`ValidatorStateError` if bad)."""
        names = ("netuid", "digest", "salt", "uids", "weights", "block")
        if not isinstance(data, dict) or set(data) != set(names) \
                or not isinstance(data["uids"], list) or not isinstance(data["weights"], list):
            raise ValidatorStateError("pending commit: expected a map of " + ", ".join(names))
        return cls(*(data[n] for n in names))


class ReceiptLog:
    """The most recent ``capacity`` signed receipts (serialised bytes), oldest dropped first.

    Recent rather than uniformly sampled: an audit asks about the queries behind the weights
    set last. ``seen`` counts every receipt ever added.

    Raises:
        ConfigError: ``capacity < 1``.
    """

    def __init__(self, capacity: int = DEFAULT_RECEIPT_CAPACITY, items: Iterable[bytes] = (),
                 seen: int = 0) -> None:
        if capacity < 1:
            raise ConfigError("receipt capacity must be >= 1")
        self._items: deque[bytes] = deque(items, maxlen=capacity)
        self.seen = max(seen, len(self._items))

    @property
    def capacity(self) -> int:
        """How many receipts are kept."""
        return self._items.maxlen or 0

    def add(self, receipt: bytes) -> None:
        """Keep ``receipt`` (e.g. ``Receipt.to_bytes()``), dropping the oldest when full."""
        self._items.append(bytes(receipt))
        self.seen += 1

    def __iter__(self) -> Iterator[bytes]:
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReceiptLog):
            return NotImplemented
        return (self.capacity, self.seen, list(self._items)) == \
            (other.capacity, other.seen, list(other._items))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        """``{"capacity": c, "seen": n, "items": [bytes, ...]}`` oldest first."""
        return {"capacity": self.capacity, "seen": self.seen, "items": list(self._items)}

    @classmethod
    def from_dict(cls, data: Any) -> ReceiptLog:
        """Rebuild from :meth:`to_dict` output (raises :class:`ValidatorStateError` if bad)."""
        if not (isinstance(data, dict) and _is_uint(data.get("capacity"))
                and data["capacity"] >= 1 and _is_uint(data.get("seen"))
                and isinstance(data.get("items"), list)
                and all(isinstance(r, bytes) for r in data["items"])
                and len(data["items"]) <= data["capacity"]):
            raise ValidatorStateError("receipts: expected capacity, seen and a list of bytes")
        return cls(data["capacity"], data["items"], data["seen"])


@dataclass(slots=True)
class ValidatorState:
    """Everything a validator must remember across restarts."""

    step: int = 0
    scores: ScoreBook = field(default_factory=ScoreBook)
    commits: list[PendingCommit] = field(default_factory=list)
    receipts: ReceiptLog = field(default_factory=ReceiptLog)
    sampler: Sampler = field(default_factory=Sampler)


def encode_state(state: ValidatorState) -> bytes:
    """The file bytes of ``state`` (header, digest, msgpack payload). Deterministic."""
    payload = codec.pack({
        "step": state.step,
        "scores": state.scores.to_dict(),
        "commits": [c.to_dict() for c in state.commits],
        "receipts": state.receipts.to_dict(),
        "sampler": state.sampler.to_dict(),
    })
    return _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(payload).digest()) + payload


def decode_state(data: bytes) -> ValidatorState:
    """Parse file bytes written by :func:`encode_state`.

    Raises:
        ValidatorStateError: wrong magic or version, digest mismatch (torn or altered file),
            undecodable payload, or a field missing or invalid.
    """
    if len(data) < _HEADER.size:
        raise ValidatorStateError(f"truncated: {len(data)} bytes, the header alone is "
                                  f"{_HEADER.size}")
    magic, version, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValidatorStateError("not a validator state file (bad magic)")
    if version != FORMAT_VERSION:
        raise ValidatorStateError(f"state format version {version}, this code reads "
                                  f"{FORMAT_VERSION}")
    payload = data[_HEADER.size:]
    if hashlib.sha256(payload).digest() != digest:
        raise ValidatorStateError("digest mismatch: the file is truncated or corrupt")
    try:
        value = codec.unpack(payload, _LIMITS)
    except (MalformedError, PayloadTooLargeError) as exc:
        raise ValidatorStateError(f"undecodable payload: {exc}") from None
    return _state_from(value)


def save_state(path: str | os.PathLike[str], state: ValidatorState) -> None:
    """Write ``state`` to ``path`` atomically and durably (temp file, fsync, rename, dir fsync).

    Raises:
        ValidatorStateError: the file or its directory cannot be written.
    """
    target = Path(path)
    data = encode_state(state)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ValidatorStateError(f"cannot write {target}: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ValidatorStateError(f"cannot write {target}: {exc}") from None


def load_state(path: str | os.PathLike[str]) -> ValidatorState | None:
    """Read the state at ``path``; ``None`` if no file exists there (a first start).

    Raises:
        ValidatorStateError: the file exists but cannot be read or is not a valid state (the
            message names the file; the file is left as it is).
    """
    target = Path(path)
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValidatorStateError(f"cannot read {target}: {exc}") from None
    try:
        return decode_state(data)
    except ValidatorStateError as exc:
        raise ValidatorStateError(f"{target}: {exc}") from None


def _state_from(value: Any) -> ValidatorState:
    fields = ("step", "scores", "commits", "receipts", "sampler")
    if not isinstance(value, dict) or set(value) != set(fields):
        raise ValidatorStateError("payload must be a map of " + ", ".join(fields))
    if not _is_uint(value["step"]):
        raise ValidatorStateError("step must be a non-negative integer")
    if not isinstance(value["commits"], list):
        raise ValidatorStateError("commits must be a list")
    return ValidatorState(step=value["step"], scores=ScoreBook.from_dict(value["scores"]),
                          commits=[PendingCommit.from_dict(c) for c in value["commits"]],
                          receipts=ReceiptLog.from_dict(value["receipts"]),
                          sampler=Sampler.from_dict(value["sampler"]))


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every platform can open a
    # directory (Windows), and there the rename is as durable as it gets.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
