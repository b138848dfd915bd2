"""The embedded chain engine: block store + state machine + mempool, single-threaded.

Acknowledgment semantics (docs/spec-ledger.md §7, §16):

* :meth:`Chain.submit` runs the stateless checks (encoding, chain id, signatures, dev-only
  faucet) and the sequence check against the committed nonce plus the signer's transactions
  already in the mempool. It raises :class:`TxRejected` at once for those, otherwise queues the
  transaction and returns a :class:`TxReceipt`. Queued is *not* committed.
* :meth:`Chain.produce_block` applies the queued transactions in arrival order; those that fail
  are dropped with their reason (and, since their nonce was not consumed, later ones of the same
  signer then fail with ``bad_sequence``). It returns only after the block is durably committed;
  each :class:`TxOutcome` is final from then on.
* If a commit fails, the in-memory state is ahead of the disk: the chain stops
  (:class:`ChainClosedError`) and must be reopened, which recovers the last committed block.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ConfigError
from protocol.keys import Keypair, decode_address
from protocol.ledger.block import BlockHeader, tx_digest
from protocol.ledger.calls import Faucet, Register
from protocol.ledger.errors import (
    ChainClosedError,
    CorruptChainError,
    DecodeError,
    LedgerError,
    Reason,
    TxRejected,
)
from protocol.ledger.events import Event
from protocol.ledger.genesis import Genesis
from protocol.ledger.machine import TxOutcome, check_stateless, execute_block
from protocol.ledger.metagraph import Metagraph, build_metagraph
from protocol.ledger.replay import Cursor, load_genesis, replay_log
from protocol.ledger.state import LedgerState, genesis_state
from protocol.ledger.state_codec import STATE_TAG, decode_state, encode_state
from protocol.ledger.store import BlockStore
from protocol.ledger.tx import Tx, decode_tx
from protocol.ledger.views import (
    AccountInfo,
    NeuronInfo,
    SubnetInfo,
    account_info,
    neuron_info,
    subnet_info,
)
from protocol.ledger.wire import tagged_hash

__all__ = ["BlockResult", "Chain", "ChainConfig", "TxReceipt"]

#: Outcomes remembered for :meth:`Chain.outcome` (older ones: included txs are still found
#: in the block log; rejected ones are forgotten).
OUTCOME_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """How to run a chain node. Read by :meth:`Chain.open`; nothing here is consensus.

    Attributes:
        node_key: this node's key; it signs blocks, so it must be a genesis authority to
            produce them (any key can open a chain to read it).
        genesis: the genesis of a new chain, or the expected one of an existing database
            (``None``: take the database's; for a new database with ``dev``, a dev genesis
            with ``node_key`` as the only authority).
        dev: whether the chain is a dev chain; must match the genesis (given or stored).
        block_time: seconds between blocks, for the service's timer (the engine has no timer).
        max_block_txs: most transactions per block; the rest wait in the mempool.
        max_mempool: most queued transactions (``mempool_full`` beyond).
        max_pending_per_signer: most queued transactions of one signer.
        max_pending_before_registration: most queued transactions of a hotkey the state does
            not know yet, admitted only because a queued ``register`` names it (enough for its
            ``serve``; without a cap, one funded key could queue registrations for many new
            hotkeys and have each fill its own allowance).
        snapshot_interval: store a state snapshot every this many blocks (restart replays
            at most this many blocks).
        snapshots_kept: newest snapshots kept besides the genesis one.
    """

    node_key: Keypair
    genesis: Genesis | None = None
    dev: bool = False
    block_time: float = 1.0
    max_block_txs: int = 1_000
    max_mempool: int = 10_000
    # Encoded bytes the mempool may hold: far above honest traffic (a full weights row of 4096
    # uids is ~24 KB), and a bound on the memory strangers can make the node spend.
    max_mempool_bytes: int = 16 << 20
    max_pending_per_signer: int = 64
    max_pending_before_registration: int = 2
    snapshot_interval: int = 100
    snapshots_kept: int = 2

    def __post_init__(self) -> None:
        if self.genesis is not None and self.genesis.dev != self.dev:
            raise ConfigError("ChainConfig.dev must equal genesis.dev")
        if not self.block_time > 0:
            raise ConfigError("block_time must be positive")
        for name in ("max_block_txs", "max_mempool", "max_mempool_bytes",
                     "max_pending_per_signer", "max_pending_before_registration",
                     "snapshot_interval", "snapshots_kept"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

@dataclass(frozen=True, slots=True)
class TxReceipt:
    """A transaction accepted into the mempool (not yet in a block)."""

    tx_hash: bytes
    signer: str
    nonce: int
    queued_at_height: int


@dataclass(frozen=True, slots=True)
class BlockResult:
    """A committed block: its header and hash, what each transaction did, end-of-block events."""

    header: BlockHeader
    hash: bytes
    outcomes: tuple[TxOutcome, ...]
    events: tuple[Event, ...]


@dataclass(slots=True)
class _Mempool:
    queue: deque[tuple[Tx, int]] = field(default_factory=deque)  # each with its encoded size
    per_signer: dict[bytes, int] = field(default_factory=dict)
    #: Hotkeys a queued ``register`` names: they may queue their own transactions (``serve``)
    #: before the registration is in a block.
    registering: dict[bytes, int] = field(default_factory=dict)
    size: int = 0

    def add(self, tx: Tx, size: int) -> None:
        self.queue.append((tx, size))
        _count(self.per_signer, tx.signer, 1)
        if isinstance(tx.call, Register):
            _count(self.registering, tx.call.hotkey, 1)
        self.size += size

    def take(self, count: int) -> list[Tx]:
        batch = [self.queue.popleft() for _ in range(min(count, len(self.queue)))]
        self.size -= sum(size for _, size in batch)
        for tx, _ in batch:
            _count(self.per_signer, tx.signer, -1)
            if isinstance(tx.call, Register):
                _count(self.registering, tx.call.hotkey, -1)
        return [tx for tx, _ in batch]


def _count(counts: dict[bytes, int], key: bytes, step: int) -> None:
    """Add ``step`` to ``counts[key]``, dropping the key at zero."""
    left = counts.get(key, 0) + step
    if left:
        counts[key] = left
    else:
        del counts[key]


class Chain:
    """A running chain: query it, submit transactions, produce blocks. Not thread-safe.

    Build it with :meth:`open`; the constructor only stores what it is given.
    """

    def __init__(self, store: BlockStore, config: ChainConfig, state: LedgerState,
                 head: BlockHeader | None) -> None:
        self._store = store
        self._config = config
        self._state = state
        self._cursor = (Cursor.after(head) if head is not None
                        else Cursor.at_genesis(state.genesis))
        self._mempool = _Mempool()
        self._outcomes: OrderedDict[bytes, TxOutcome] = OrderedDict()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, config: ChainConfig) -> Chain:
        """Open the chain database at ``path`` (creating it from the genesis if new).

        Recovers the last committed block: loads the newest snapshot and replays the blocks
        after it with every check.

        Raises:
            ConfigError: a new database and no genesis (outside dev), another chain's
                genesis, or a ``dev`` flag that does not match the chain.
            CorruptChainError: a stored block or snapshot does not check out.
            StoreError: the database cannot be opened (``SchemaVersionError`` for a newer one).
        """
        path = Path(path)
        genesis = config.genesis
        if genesis is None and not path.exists():
            if not config.dev:
                raise ConfigError(f"{path} does not exist and no genesis was given")
            genesis = Genesis.for_dev(config.node_key.address)
        created = None if genesis is None else encode_state(genesis_state(genesis))
        store = BlockStore.open(path, genesis=None if genesis is None else genesis.encode(),
                                snapshot=created)
        try:
            stored = load_genesis(store)
            if genesis is not None and stored.chain_id != genesis.chain_id:
                raise ConfigError(f"{path} holds another chain (genesis differs)")
            if stored.dev != config.dev:
                raise ConfigError(f"{path} holds a {'dev' if stored.dev else 'non-dev'} chain")
            state, head = _recover(store, stored)
        except BaseException:
            store.close()
            raise
        return cls(store, config, state, head)

    def close(self) -> None:
        """Close the database; pending transactions are dropped. Idempotent."""
        if not self._closed:
            self._closed = True
            self._store.close()

    def _require_open(self) -> None:
        if self._closed:
            raise ChainClosedError("the chain is closed")

    # --- properties ---------------------------------------------------------------------------

    @property
    def config(self) -> ChainConfig:
        """The configuration the chain was opened with."""
        return self._config

    @property
    def genesis(self) -> Genesis:
        """The chain's genesis."""
        return self._state.genesis

    @property
    def chain_id(self) -> bytes:
        """The 32-byte chain id every transaction must carry."""
        return self._state.chain_id

    @property
    def height(self) -> int:
        """Height of the last committed block (0 before the first)."""
        return self._state.height

    @property
    def head_hash(self) -> bytes:
        """Hash of the last committed block (the chain id before the first)."""
        return self._cursor.prev_hash

    @property
    def pending(self) -> int:
        """Transactions waiting in the mempool."""
        return len(self._mempool.queue)

    # --- transactions -------------------------------------------------------------------------

    def submit(self, tx: Tx | bytes) -> TxReceipt:
        """Queue a transaction for the next block (see the module docstring for semantics).

        Raises:
            TxRejected: ``malformed``, ``bad_chain_id``, ``bad_signature``, ``not_dev_chain``,
                ``unknown_signer`` (a key the state knows nothing of), ``bad_sequence`` (nonce
                is not the signer's next one) or ``mempool_full``.
            ChainClosedError: the chain is closed.
        """
        self._require_open()
        data = tx if isinstance(tx, bytes) else _wire_bytes(tx)
        tx = decode_tx(data)
        check_stateless(tx, self._state.genesis)
        known = self._state.knows(tx.signer)
        if not (known or tx.signer in self._mempool.per_signer
                or tx.signer in self._mempool.registering or isinstance(tx.call, Faucet)):
            # Queuing costs nothing and new keys are free: without this rule anyone could fill
            # the mempool with transactions that can only fail, and lock honest users out.
            raise TxRejected(Reason.UNKNOWN_SIGNER, "the signing key has no balance, has sent "
                             "no transaction and is no registered hotkey; fund it first")
        queued = self._mempool.per_signer.get(tx.signer, 0)
        expected = self._state.nonce(tx.signer) + queued
        if tx.nonce != expected:
            raise TxRejected(Reason.BAD_SEQUENCE, f"expected sequence {expected}, got {tx.nonce}")
        if (len(self._mempool.queue) >= self._config.max_mempool
                or self._mempool.size + len(data) > self._config.max_mempool_bytes
                or queued >= self._config.max_pending_per_signer):
            raise TxRejected(Reason.MEMPOOL_FULL, "too many pending transactions, retry later")
        if (not known and tx.signer in self._mempool.registering
                and queued >= self._config.max_pending_before_registration):
            raise TxRejected(Reason.MEMPOOL_FULL, "this hotkey's registration is still queued: "
                             f"it may queue {self._config.max_pending_before_registration} "
                             "transactions until it lands; retry after the next block")
        self._mempool.add(tx, len(data))
        return TxReceipt(tx.hash, tx.signer_address, tx.nonce, self._state.height)

    def produce_block(self, now_ms: int) -> BlockResult:
        """Build, sign and durably commit the next block from the mempool.

        Args:
            now_ms: wall time in Unix milliseconds (``protocol.clock.Clock.now_ms``); the
                block's timestamp, raised to the previous block's if the clock went backwards.

        Raises:
            LedgerError: this node's key is not a genesis authority.
            StoreError: the commit failed; the chain is then closed (reopen to recover).
            ChainClosedError: the chain is closed.
        """
        self._require_open()
        key = self._config.node_key
        if key.public_key.raw not in self._state.genesis.authority_keys:
            raise LedgerError("this node's key is not a block authority of the genesis")
        try:
            return self._produce(now_ms, key)
        except BaseException:
            # the in-memory state may be ahead of the database now: stop, reopen to recover
            self.close()
            raise

    def _produce(self, now_ms: int, key: Keypair) -> BlockResult:
        height = self._state.height + 1
        effects = execute_block(self._state, self._mempool.take(self._config.max_block_txs),
                                height, strict=False)
        encoded = encode_state(self._state)
        hashes = [o.tx_hash for o in effects.outcomes if o.applied]
        header = BlockHeader(height=height, prev_hash=self._cursor.prev_hash,
                             timestamp_ms=max(self._cursor.timestamp_ms, now_ms),
                             tx_digest=tx_digest(hashes),
                             state_digest=tagged_hash(STATE_TAG, encoded),
                             proposer=key.public_key.raw)
        snapshot = encoded if height % self._config.snapshot_interval == 0 else None
        self._store.append(header, header.sign(key),
                           [(h, tx.encode()) for h, tx in zip(hashes, effects.included,
                                                               strict=True)],
                           snapshot, keep_snapshots=self._config.snapshots_kept)
        self._cursor = Cursor.after(header)
        for outcome in effects.outcomes:
            self._remember(outcome)
        return BlockResult(header, header.hash, effects.outcomes, effects.block_events)

    def _remember(self, outcome: TxOutcome) -> None:
        self._outcomes[outcome.tx_hash] = outcome
        while len(self._outcomes) > OUTCOME_MEMORY:
            self._outcomes.popitem(last=False)

    def outcome(self, tx_hash: bytes) -> TxOutcome | None:
        """The final outcome of a transaction, or ``None`` while pending or unknown.

        Recent outcomes carry their events; an older included transaction is found in the
        block log (``applied=True``, its height, no events).
        """
        self._require_open()
        known = self._outcomes.get(tx_hash)
        if known is not None:
            return known
        location = self._store.find_tx(tx_hash)
        return None if location is None else TxOutcome(tx_hash, True, height=location[0])

    # --- queries ------------------------------------------------------------------------------

    def account(self, address: str) -> AccountInfo:
        """Balance, sequence numbers and stake of ``address`` at the last block."""
        self._require_open()
        key = decode_address(address)
        return account_info(self._state, address, self._mempool.per_signer.get(key, 0))

    def subnet(self, netuid: int) -> SubnetInfo:
        """Subnet ``netuid`` (raises :class:`NoSuchItemError`)."""
        self._require_open()
        return subnet_info(self._state, netuid)

    def subnets(self) -> tuple[SubnetInfo, ...]:
        """Every subnet, by netuid."""
        self._require_open()
        return tuple(subnet_info(self._state, n) for n in sorted(self._state.subnets))

    def neuron(self, netuid: int, who: int | str) -> NeuronInfo:
        """The neuron at a uid or held by a hotkey address (raises :class:`NoSuchItemError`)."""
        self._require_open()
        return neuron_info(self._state, netuid, who)

    def metagraph(self, netuid: int) -> Metagraph:
        """A frozen snapshot of subnet ``netuid`` at the last block."""
        self._require_open()
        return build_metagraph(self._state, netuid)

    def state_view(self) -> LedgerState:
        """The live state, for read-only inspection (tests, tools). Do not mutate it."""
        self._require_open()
        return self._state


def _wire_bytes(tx: Tx) -> bytes:
    """Encode a caller-built :class:`Tx`; a field msgpack cannot hold is ``malformed``."""
    try:
        return tx.encode()
    except (TypeError, ValueError, OverflowError) as exc:
        raise TxRejected(Reason.MALFORMED, f"cannot encode the transaction: {exc}") from None


def _recover(store: BlockStore, genesis: Genesis) -> tuple[LedgerState, BlockHeader | None]:
    """Load the newest snapshot and replay the blocks after it; return the state and head."""
    height, blob = store.latest_snapshot()
    try:
        state = decode_state(blob, genesis)
    except DecodeError as exc:
        raise CorruptChainError(height, f"snapshot does not decode: {exc}") from None
    head = None
    if height == 0 and blob != encode_state(genesis_state(genesis)):
        raise CorruptChainError(0, "the genesis snapshot does not match the genesis")
    if height:
        block = store.block(height)
        if block is None or tagged_hash(STATE_TAG, blob) != block.header.state_digest:
            raise CorruptChainError(height, "snapshot does not match its block's state digest")
        head = block.header
    cursor = Cursor.after(head) if head else Cursor.at_genesis(genesis)
    for block in replay_log(store, state, cursor):
        head = block.header
    return state, head
