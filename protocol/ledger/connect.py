"""One way to name a chain: ``--chain URL`` (a node) or ``--chain PATH`` (a SQLite chain file).

:func:`open_ledger` turns that string into a running :class:`Ledger`:

* ``http://…`` / ``https://…`` → a :class:`RemoteLedger` talking to a chain node;
* anything else is a filesystem path → an :class:`EmbeddedLedger` over :meth:`Chain.open` that
  also runs the block timer in this process (single-process use: a dev chain for one command,
  a test, a demo).

**Only one process may own a chain file.** SQLite would let two processes open it, but each
would keep its own state and mempool and both would append blocks: the chain would fork on
disk. Whoever opens a chain file to run it (this module, and the node, which uses
:func:`run_embedded`) first takes an exclusive ``flock`` on ``PATH.lock`` and holds it until it
closes; a second owner is refused at once with :class:`ChainInUseError`, whose message names
the owner's node URL when it has one. The kernel drops the lock when the owner exits, even on
``kill -9``, so a crashed owner never blocks a restart. ``verify`` only reads and needs no lock.
POSIX only (``fcntl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from protocol.clock import Clock, SystemClock
from protocol.errors import ConfigError
from protocol.keys import Keypair
from protocol.ledger.chain import BlockResult, Chain, ChainConfig
from protocol.ledger.errors import ChainInUseError, StoreError
from protocol.ledger.interface import EmbeddedLedger, Ledger
from protocol.ledger.replay import load_genesis
from protocol.ledger.store import BlockStore

__all__ = [
    "DEFAULT_BLOCK_TIME",
    "DEV_BLOCK_TIME",
    "BlockTimer",
    "ChainFileLock",
    "ChainInUseError",
    "EmbeddedChain",
    "dev_authority_key",
    "is_url",
    "lock_path",
    "open_ledger",
    "run_embedded",
]

log = logging.getLogger("ensemble.chain")

#: Seconds between blocks of a production chain (the reference chain's block time).
DEFAULT_BLOCK_TIME = 12.0
#: Seconds between blocks of a dev chain: fast enough that a command waiting for inclusion
#: feels immediate, slow enough that an idle dev node does not churn the disk.
DEV_BLOCK_TIME = 1.0
#: Public, well-known seed of the dev-chain authority (like Substrate's ``//Alice``), so a dev
#: chain file keeps producing blocks across restarts without a key option. Never fund it on a
#: real network: everyone knows its seed.
_DEV_AUTHORITY_LABEL = b"ensemblenet/dev-authority/v1"


def dev_authority_key() -> Keypair:
    """The well-known block authority of dev chains created without an explicit node key."""
    return Keypair(hashlib.sha256(_DEV_AUTHORITY_LABEL).digest())


def is_url(spec: str) -> bool:
    """Whether a ``--chain`` value names a node (http/https URL) rather than a file."""
    return spec.startswith(("http://", "https://"))


def lock_path(db_path: str | Path) -> Path:
    """The lock file that guards ``db_path``: the same name with ``.lock`` appended."""
    return Path(f"{db_path}.lock")


class ChainFileLock:
    """An exclusive, non-blocking ``flock`` on ``PATH.lock``. Construction does no I/O."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self, owner: str) -> None:
        """Take the lock and record ``owner`` (a node URL or a description) in the file.

        Raises:
            ChainInUseError: another process holds it; the message says who, if it said.
            StoreError: the lock file cannot be created.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd)
            os.close(fd)
            hint = (f"connect to its node with --chain {holder}" if is_url(holder)
                    else "connect to its node with --chain http://HOST:PORT, or wait for it "
                         "to finish")
            raise ChainInUseError(
                f"chain file {str(self.path)[:-5]} is in use by another process"
                f"{f' ({holder})' if holder and not is_url(holder) else ''}; {hint}") from None
        self._fd = fd
        self.record(owner)

    def record(self, owner: str) -> None:
        """Replace the owner note (e.g. with the node URL once the port is bound)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, owner.encode()[:512], 0)

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays; its presence means nothing."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _read_owner(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""


class BlockTimer:
    """Produces a block on an :class:`EmbeddedLedger` every ``block_time`` seconds.

    Ticks follow the event loop's monotonic clock on a fixed schedule (a slow block delays the
    next tick but ticks do not pile up); each block's timestamp is ``clock.now_ms()``.
    :meth:`stop` lets a block in production finish its commit before returning, so a shutdown
    never abandons a half-written block. If producing a block fails (the chain then closes
    itself, see :meth:`Chain.produce_block`), the timer stops, keeps the error in
    :attr:`failure` and calls ``on_failure``.
    """

    def __init__(self, ledger: EmbeddedLedger, block_time: float, clock: Clock, *,
                 on_block: Callable[[BlockResult, float], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        if not block_time > 0:
            raise ConfigError("block_time must be positive")
        self._ledger = ledger
        self._block_time = block_time
        self._clock = clock
        self._on_block = on_block
        self._on_failure = on_failure
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Start ticking (the first block comes one block time from now)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="block-timer")

    async def stop(self) -> None:
        """Stop ticking; waits for a block being produced to be committed. Idempotent."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._block_time
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_tick - loop.time()))
            if self._stop.is_set():
                return
            started = loop.time()
            try:
                result = await self._produce()
            except Exception as exc:  # any failure stops production; it is reported
                log.exception("block production failed; the chain stopped")
                self.failure = exc
                if self._on_failure is not None:
                    self._on_failure(exc)
                return
            if self._on_block is not None:
                self._on_block(result, loop.time() - started)
            next_tick = max(next_tick + self._block_time, loop.time())

    async def _produce(self) -> BlockResult:
        """Produce one block; if cancelled meanwhile, finish the commit, then re-raise."""
        job = asyncio.ensure_future(self._ledger.produce_block(self._clock.now_ms()))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await job
            raise


@dataclass(frozen=True, slots=True)
class EmbeddedChain:
    """A chain file opened by :func:`run_embedded`: the ledger, its timer and its lock."""

    ledger: EmbeddedLedger
    timer: BlockTimer
    lock: ChainFileLock


def _chain_config(db_path: Path, *, dev: bool, block_time: float | None,
                  node_key: Keypair | None) -> ChainConfig:
    """The engine configuration for ``db_path``: an existing file's genesis decides ``dev``."""
    if db_path.exists():
        store = BlockStore.open(db_path, readonly=True)
        try:
            dev = load_genesis(store).dev
        finally:
            store.close()
    elif not dev:
        raise ConfigError(f"{db_path} does not exist; pass --dev to create a dev chain there "
                          "or create a production chain with 'ensemble chain init'")
    key = node_key if node_key is not None else dev_authority_key() if dev else None
    if key is None:
        raise ConfigError("a non-dev chain needs this node's block key "
                          "(--node-key-seed HEX or --wallet/--hotkey)")
    seconds = block_time if block_time is not None else (
        DEV_BLOCK_TIME if dev else DEFAULT_BLOCK_TIME)
    return ChainConfig(node_key=key, dev=dev, block_time=seconds)


@asynccontextmanager
async def run_embedded(db_path: str | Path, config: ChainConfig | None = None, *,
                       dev: bool = False, block_time: float | None = None,
                       node_key: Keypair | None = None, clock: Clock | None = None,
                       owner: str = "",
                       on_block: Callable[[BlockResult, float], None] | None = None,
                       on_failure: Callable[[BaseException], None] | None = None,
                       ) -> AsyncIterator[EmbeddedChain]:
    """Own a chain file: lock it, open it, produce blocks on a timer; undo all on exit.

    ``config`` gives the engine configuration; without it one is derived: an existing file's
    genesis decides ``dev``; a missing file is created as a dev chain only with ``dev``; the
    node key defaults to :func:`dev_authority_key` on dev chains; ``block_time`` defaults to
    :data:`DEV_BLOCK_TIME` or :data:`DEFAULT_BLOCK_TIME`. On exit the timer stops (a block in
    production is committed first), the chain closes and the lock is released.

    Raises:
        ChainInUseError: another process owns the file.
        ConfigError: no chain can be run from these options, or the node key is not one of
            the chain's block authorities (it could never produce a block).
        StoreError, CorruptChainError: see :meth:`Chain.open`.
    """
    path = Path(db_path)
    lock = ChainFileLock(path)
    lock.acquire(owner or f"pid {os.getpid()}")
    try:
        if config is None:
            config = await asyncio.to_thread(_chain_config, path, dev=dev,
                                             block_time=block_time, node_key=node_key)
        chain = await asyncio.to_thread(Chain.open, path, config)
        ledger = EmbeddedLedger(chain)
        try:
            if config.node_key.public_key.raw not in chain.genesis.authority_keys:
                raise ConfigError(
                    f"this node's key {config.node_key.address} is not a block authority of "
                    f"the chain in {path}; use one of: {', '.join(chain.genesis.authorities)}")
            timer = BlockTimer(ledger, config.block_time, clock or SystemClock(),
                               on_block=on_block, on_failure=on_failure)
            timer.start()
            try:
                yield EmbeddedChain(ledger, timer, lock)
            finally:
                await timer.stop()
        finally:
            await ledger.aclose()
    finally:
        lock.release()


@asynccontextmanager
async def open_ledger(spec: str, *, dev: bool = False, block_time: float | None = None,
                      node_key: Keypair | None = None) -> AsyncIterator[Ledger]:
    """A :class:`Ledger` for a ``--chain`` value, closed on exit.

    Args:
        spec: an ``http(s)://`` node URL, or the path of a chain file.
        dev: for a path that does not exist yet, create a dev chain there (an existing file is
            opened as whatever its genesis says). Ignored for URLs.
        block_time: seconds between blocks of an embedded chain (default: 1 s dev, 12 s
            otherwise). Ignored for URLs (the node has its own).
        node_key: the block authority key of an embedded chain (default: the well-known dev
            authority on dev chains). Ignored for URLs.

    Raises:
        ChainInUseError: the file is owned by another process (connect to its node instead).
        ConfigError: an empty spec, or an embedded chain cannot be run (see
            :func:`run_embedded`).
    """
    if not spec:
        raise ConfigError("no chain given: pass --chain PATH or --chain http://HOST:PORT")
    if is_url(spec):
        from protocol.ledger.remote import RemoteLedger  # noqa: PLC0415 - aiohttp client only here

        async with RemoteLedger(spec) as remote:
            yield remote
        return
    async with run_embedded(spec, dev=dev, block_time=block_time, node_key=node_key) as run:
        yield run.ledger
