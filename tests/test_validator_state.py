"""Validator state persistence: exact format, atomic durable writes, clear errors on corruption."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import pack, unpack
from protocol.envelope import Receipt, sha256
from protocol.errors import ConfigError, EnsembleError
from protocol.keys import Keypair
from validators.errors import ValidatorStateError
from validators.metagraph import Identity
from validators.sampling import Sampler
from validators.scores import ScoreBook
from validators.state import (
    FORMAT_VERSION,
    MAGIC,
    PendingCommit,
    ReceiptLog,
    ValidatorState,
    decode_state,
    encode_state,
    load_state,
    save_state,
)

MINER = Keypair(hashlib.sha256(b"state-miner").digest())
ALICE = Identity("alice", 10)
BOB = Identity("bob", 20)


def receipt(n: int) -> bytes:
    """The stored bytes of the n-th signed receipt."""
    return Receipt.issue(MINER, sha256(b"req%d" % n), 200, sha256(b"body"), 1_000 + n).to_bytes()


def sample_state() -> ValidatorState:
    """A state with every field populated."""
    sampler = Sampler()
    sampler.sample([ALICE, BOB], 1, np.random.default_rng(0))
    receipts = ReceiptLog(capacity=4)
    for n in range(6):
        receipts.add(receipt(n))
    return ValidatorState(
        step=42, scores=ScoreBook(alpha=0.2, scores={ALICE: 0.5, BOB: 0.125}),
        commits=[PendingCommit(netuid=1, digest=bytes(range(32)), salt=b"salt-0123456789a",
                               uids=(0, 3), weights=(65535, 1234), block=777)],
        receipts=receipts, sampler=sampler)


def with_digest(payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """File bytes around ``payload`` with a correct header and digest."""
    return struct.pack(">8sH32s", MAGIC, version, hashlib.sha256(payload).digest()) + payload


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    """save_state then load_state gives an equal state."""
    path = tmp_path / "validator.state"
    state = sample_state()
    save_state(path, state)
    loaded = load_state(path)
    assert loaded == state
    assert loaded is not None
    assert list(loaded.receipts) == [receipt(n) for n in range(2, 6)]
    assert loaded.receipts.seen == 6
    assert Receipt.from_bytes(next(iter(loaded.receipts))).is_valid()


def test_exact_layout_and_determinism() -> None:
    """Magic, version and digest head the payload; equal states give equal bytes."""
    data = encode_state(sample_state())
    assert data[:10] == b"ENVSTATE\x00\x01"
    assert data[10:42] == hashlib.sha256(data[42:]).digest()
    assert encode_state(decode_state(data)) == data == encode_state(sample_state())
    empty = encode_state(ValidatorState())
    assert decode_state(empty) == ValidatorState()


def test_missing_file_is_a_first_start(tmp_path: Path) -> None:
    """No file means no state yet: None, not an error."""
    assert load_state(tmp_path / "absent") is None


def test_save_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """A second save replaces the first; only the state file remains in the directory."""
    path = tmp_path / "validator.state"
    save_state(path, ValidatorState(step=1))
    save_state(path, ValidatorState(step=2))
    loaded = load_state(path)
    assert loaded is not None
    assert loaded.step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validator.state"]


def test_save_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both the temporary file and the directory are fsynced."""
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    save_state(tmp_path / "s", ValidatorState())
    assert len(synced) == 2


def test_failed_rename_keeps_the_old_state(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails the old file is intact and the temporary file is removed."""
    path = tmp_path / "validator.state"
    save_state(path, ValidatorState(step=1))

    def broken_replace(src: str, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ValidatorStateError, match="disk on fire"):
        save_state(path, ValidatorState(step=2))
    monkeypatch.undo()
    loaded = load_state(path)
    assert loaded is not None
    assert loaded.step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validator.state"]


def test_unwritable_location(tmp_path: Path) -> None:
    """A directory that does not exist is a ValidatorStateError naming the file."""
    with pytest.raises(ValidatorStateError, match="cannot write"):
        save_state(tmp_path / "missing" / "s", ValidatorState())


def test_unreadable_location(tmp_path: Path) -> None:
    """A path that cannot be read (a directory) is a ValidatorStateError."""
    with pytest.raises(ValidatorStateError, match="cannot read"):
        load_state(tmp_path)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "digest mismatch"),
    (lambda d: d[:50] + bytes([d[50] ^ 1]) + d[51:], "digest mismatch"),
    (lambda d: b"XXXXXXXX" + d[8:], "bad magic"),
    (lambda d: d[:8] + b"\x00\x02" + d[10:], "version 2"),
    (lambda d: b"", "truncated"),
])
def test_corrupt_files_are_reported(tmp_path: Path, mutate: Any, message: str) -> None:
    """Torn, altered or foreign files raise ValidatorStateError naming the file and the fault."""
    path = tmp_path / "validator.state"
    path.write_bytes(mutate(encode_state(sample_state())))
    with pytest.raises(ValidatorStateError, match=message) as info:
        load_state(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, EnsembleError)


@pytest.mark.parametrize("payload", [
    b"\xc1",
    pack([1, 2]),
    pack({"step": 1}),
    pack({"step": -1, "scores": {"alpha": 0.1, "scores": []}, "commits": [],
          "receipts": {"capacity": 1, "seen": 0, "items": []},
          "sampler": {"queue": [], "done": []}}),
    pack({"step": 1, "scores": {"alpha": 0.1, "scores": []}, "commits": [{"netuid": 1}],
          "receipts": {"capacity": 1, "seen": 0, "items": []},
          "sampler": {"queue": [], "done": []}}),
    pack({"step": 1, "scores": {"alpha": 0.1, "scores": []}, "commits": [],
          "receipts": {"capacity": 1, "seen": 0, "items": [b"a", b"b"]},
          "sampler": {"queue": [], "done": []}}),
    pack({"step": 1, "scores": {"alpha": 0.1, "scores": []}, "commits": {},
          "receipts": {"capacity": 1, "seen": 0, "items": []},
          "sampler": {"queue": [], "done": []}}),
])
def test_well_signed_but_invalid_payloads(payload: bytes) -> None:
    """A payload with a correct digest but invalid content is still refused."""
    with pytest.raises(ValidatorStateError):
        decode_state(with_digest(payload))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), framed=st.booleans())
def test_decoder_only_raises_its_own_error(data: bytes, framed: bool) -> None:
    """Any bytes either decode or raise ValidatorStateError; nothing else, ever."""
    with contextlib.suppress(ValidatorStateError):
        decode_state(with_digest(data) if framed else data)


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["step", "scores", "commits", "receipts", "sampler"]),
       value=PLAIN, nested=st.booleans())
def test_field_values_of_any_shape_only_raise_its_own_error(field: str, value: object,
                                                            nested: bool) -> None:
    """A well-framed payload whose one field (or first row) is arbitrary decodes or is refused."""
    good = unpack_payload(encode_state(sample_state()))
    if nested and isinstance(good[field], dict):
        key = next(iter(good[field]))
        good[field][key] = [value]
    elif nested and isinstance(good[field], list):
        good[field] = [value]
    else:
        good[field] = value
    with contextlib.suppress(ValidatorStateError):
        decode_state(with_digest(pack(good)))


def unpack_payload(data: bytes) -> dict[str, Any]:
    """The payload map of encoded state bytes."""
    value: dict[str, Any] = unpack(data[42:])
    return value


# --- parts ----------------------------------------------------------------------------------


def test_receipt_log_is_bounded() -> None:
    """The log keeps the newest receipts up to its capacity and counts all it saw."""
    log = ReceiptLog(capacity=3)
    for n in range(5):
        log.add(b"r%d" % n)
    assert list(log) == [b"r2", b"r3", b"r4"]
    assert len(log) == 3
    assert log.seen == 5
    assert log.to_dict() == {"capacity": 3, "seen": 5, "items": [b"r2", b"r3", b"r4"]}
    assert ReceiptLog.from_dict(log.to_dict()) == log
    with pytest.raises(ConfigError):
        ReceiptLog(capacity=0)


@pytest.mark.parametrize("kwargs", [
    {"digest": b"short"}, {"netuid": -1}, {"block": True}, {"uids": (1,)},
    {"weights": (70000, 1)}, {"salt": "text"},
])
def test_pending_commit_validation(kwargs: dict[str, Any]) -> None:
    """Commits with wrong sizes, ranges or types are refused."""
    fields: dict[str, Any] = {"netuid": 1, "digest": bytes(32), "salt": b"s", "uids": (0, 1),
                              "weights": (1, 2), "block": 5}
    with pytest.raises(ValidatorStateError):
        PendingCommit(**(fields | kwargs))


def test_pending_commit_round_trip() -> None:
    """A commit's dict has a fixed field order and rebuilds the same commit."""
    commit = sample_state().commits[0]
    assert list(commit.to_dict()) == ["netuid", "digest", "salt", "uids", "weights", "block"]
    assert PendingCommit.from_dict(commit.to_dict()) == commit
