"""SQLite block store: the block log, periodic state snapshots, the genesis. No ledger logic.

WAL journal with ``synchronous=FULL``: :meth:`BlockStore.append` writes a block, its
transactions and (optionally) a snapshot in one SQL transaction, and returns only after COMMIT
is durable. sqlite3 errors are translated to :class:`StoreError` here and nowhere else.

Schema version 1 (docs/spec-ledger.md §15)::

    schema_version(version)                       one row
    meta(key, value)                              'genesis' -> canonical genesis bytes
    blocks(height PK, hash, prev_hash, timestamp_ms, tx_digest, state_digest, proposer,
           signature, tx_count)
    txs(height, idx, hash, body; PK (height, idx))  body = the transaction's wire bytes
    snapshots(height PK, state)                   state = canonical state encoding
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.ledger.block import BlockHeader
from protocol.ledger.errors import CorruptChainError, SchemaVersionError, StoreError

__all__ = ["SCHEMA_VERSION", "BlockStore", "StoredBlock"]

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, "
    "prev_hash BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, tx_digest BLOB NOT NULL, "
    "state_digest BLOB NOT NULL, proposer BLOB NOT NULL, signature BLOB NOT NULL, "
    "tx_count INTEGER NOT NULL)",
    "CREATE TABLE txs (height INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
    "body BLOB NOT NULL, PRIMARY KEY (height, idx))",
    "CREATE INDEX txs_by_hash ON txs (hash)",
    "CREATE TABLE snapshots (height INTEGER PRIMARY KEY, state BLOB NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block as stored: header, the proposer's signature, the transactions' wire bytes.

    ``stored_hash`` and ``tx_count`` are the columns as written (``verify`` checks them).
    """

    header: BlockHeader
    signature: bytes
    txs: tuple[bytes, ...]
    stored_hash: bytes
    tx_count: int


class BlockStore:
    """One open ledger database. Build it with :meth:`open`; the constructor does no I/O."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, genesis: bytes | None = None,
             snapshot: bytes | None = None, readonly: bool = False) -> BlockStore:
        """Open (or, given ``genesis`` and ``snapshot``, create) a ledger database.

        Args:
            path: the SQLite file.
            genesis: canonical genesis bytes, written only when the database is new.
            snapshot: the height-0 state encoding, written with the genesis.
            readonly: open without write access (for ``verify``); the file must exist.

        Raises:
            SchemaVersionError: the database has another schema version.
            StoreError: it cannot be opened, or it is new and no genesis was given.
        """
        path = Path(path)
        try:
            if readonly:
                db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                                     isolation_level=None, check_same_thread=False)
            else:
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger database {path}: {exc}") from None
        store = cls(db, path)
        try:
            store._prepare(genesis, snapshot, readonly=readonly)
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open ledger database {path}: {exc}") from None
            raise
        return store

    def _prepare(self, genesis: bytes | None, snapshot: bytes | None, *, readonly: bool) -> None:
        if not readonly:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        # a column edited into TEXT still reads as bytes, so checks see it as corrupt data
        self._db.text_factory = bytes
        tables = {bytes(row[0]).decode() for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if readonly or genesis is None or snapshot is None:
                raise StoreError(f"{self.path} is not a ledger database (and no genesis given)")
            self._create(genesis, snapshot)
            return
        row = (self._db.execute("SELECT version FROM schema_version").fetchone()
               if "schema_version" in tables else None)
        found = row[0] if row and type(row[0]) is int else 0
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(found, SCHEMA_VERSION)

    def _create(self, genesis: bytes, snapshot: bytes) -> None:
        with self._transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            self._db.execute("INSERT INTO meta VALUES ('genesis', ?)", (genesis,))
            self._db.execute("INSERT INTO snapshots VALUES (0, ?)", (snapshot,))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # --- reads --------------------------------------------------------------------------------

    def genesis(self) -> bytes:
        """The canonical genesis bytes."""
        row = self._query_one("SELECT value FROM meta WHERE key = 'genesis'", ())
        if row is None:
            raise StoreError("the database has no genesis record")
        return bytes(row[0])

    def tip_height(self) -> int:
        """Height of the last committed block (0 if none)."""
        row = self._query_one("SELECT MAX(height) FROM blocks", ())
        return int(row[0]) if row and row[0] is not None else 0

    def block(self, height: int) -> StoredBlock | None:
        """The block at ``height`` with its transactions, or ``None``."""
        return next(self.blocks(height, height), None)

    def blocks(self, first: int, last: int | None = None) -> Iterator[StoredBlock]:
        """Blocks ``first..last`` (inclusive; ``None`` = to the tip) in height order."""
        end = self.tip_height() if last is None else last
        for height in range(first, end + 1):
            row = self._query_one(
                "SELECT height, prev_hash, timestamp_ms, tx_digest, state_digest, proposer, "
                "signature, hash, tx_count FROM blocks WHERE height = ?", (height,))
            if row is None:
                return
            txs = self._query_all("SELECT body FROM txs WHERE height = ? ORDER BY idx",
                                  (height,))
            yield _stored_block(height, row, [t[0] for t in txs])

    def latest_snapshot(self) -> tuple[int, bytes]:
        """``(height, state bytes)`` of the newest snapshot (there is always one, at 0)."""
        row = self._query_one(
            "SELECT height, state FROM snapshots ORDER BY height DESC LIMIT 1", ())
        if row is None:
            raise StoreError("the database has no state snapshot")
        return int(row[0]), bytes(row[1])

    def snapshots(self) -> Iterator[tuple[int, bytes]]:
        """Every stored snapshot, by height."""
        for row in self._query_all("SELECT height, state FROM snapshots ORDER BY height", ()):
            yield int(row[0]), bytes(row[1])

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, index)`` of an included transaction, or ``None``."""
        row = self._query_one("SELECT height, idx FROM txs WHERE hash = ? LIMIT 1", (tx_hash,))
        return None if row is None else (int(row[0]), int(row[1]))

    def _query_one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path}: {exc}") from None
        return row

    def _query_all(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path}: {exc}") from None
        return rows

    # --- writes -------------------------------------------------------------------------------

    def append(self, header: BlockHeader, signature: bytes, txs: Sequence[tuple[bytes, bytes]],
               snapshot: bytes | None = None, *, keep_snapshots: int = 2) -> None:
        """Durably append one block: its header, ``(hash, body)`` transactions, a snapshot.

        Returns after COMMIT. Older snapshots beyond the newest ``keep_snapshots`` are deleted
        (the height-0 snapshot is always kept, so a replay can start from it).

        Raises:
            StoreError: the write failed; nothing of the block is stored.
        """
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (header.height, header.hash, header.prev_hash, header.timestamp_ms,
                     header.tx_digest, header.state_digest, header.proposer, signature,
                     len(txs)))
                self._db.executemany(
                    "INSERT INTO txs VALUES (?, ?, ?, ?)",
                    [(header.height, idx, h, body) for idx, (h, body) in enumerate(txs)])
                if snapshot is not None:
                    self._db.execute("INSERT INTO snapshots VALUES (?, ?)",
                                     (header.height, snapshot))
                    self._db.execute(
                        "DELETE FROM snapshots WHERE height > 0 AND height NOT IN "
                        "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                        (keep_snapshots,))
        except sqlite3.Error as exc:
            raise StoreError(f"writing block {header.height} to {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the database (idempotent)."""
        try:
            self._db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"closing {self.path}: {exc}") from None


def _stored_block(height: int, row: tuple[Any, ...], txs: list[Any]) -> StoredBlock:
    """Build a :class:`StoredBlock` from SQL values, refusing columns of the wrong type."""
    ints, blobs = (row[0], row[2], row[8]), (row[1], *row[3:8], *txs)
    if not all(type(v) is int for v in ints) or not all(type(v) is bytes for v in blobs):
        raise CorruptChainError(height, "a stored column has the wrong type")
    header = BlockHeader(row[0], row[1], row[2], row[3], row[4], row[5])
    return StoredBlock(header, row[6], tuple(txs), row[7], row[8])


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
