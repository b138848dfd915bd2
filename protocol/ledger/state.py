"""The ledger state: accounts, stake, subnets and their neurons. Plain data, no I/O.

Keys are raw 32-byte public keys; addresses appear only at the API edges. Mutation happens only
in the transition modules (``accounts``, ``subnets``, ``registration``, ``weights``, ``epoch``),
which check everything before they change anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.keys import decode_address
from protocol.ledger.genesis import Genesis
from protocol.ledger.hyperparams import SubnetHyperparams

__all__ = [
    "Account",
    "Commit",
    "Endpoint",
    "LedgerState",
    "Neuron",
    "Subnet",
    "SupplyBreakdown",
    "genesis_state",
]


@dataclass(slots=True)
class Account:
    """A key's balance (units) and its sequence number (transactions it signed so far)."""

    balance: int = 0
    nonce: int = 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a neuron serves: host, port, protocol version, and the block it was published."""

    host: str
    port: int
    protocol: int
    block: int


@dataclass(frozen=True, slots=True)
class Commit:
    """A pending weights commit: its digest, the block it was made, the epoch it may reveal in."""

    digest: bytes
    block: int
    reveal_epoch: int


@dataclass(slots=True)
class Neuron:
    """One uid slot of a subnet and everything that belongs to its current holder.

    Epoch outputs (``incentive`` ... ``validator_trust``) are u16 proportions (value / 65535),
    as the reference chain stores them; ``emission`` is the units paid at the last epoch.
    ``weights`` and ``bonds`` are sparse rows: uid -> u16 value, zeros omitted.
    """

    uid: int
    hotkey: bytes
    registered_at: int
    last_update: int
    validator_permit: bool = False
    active: bool = True
    incentive: int = 0
    dividends: int = 0
    trust: int = 0
    consensus: int = 0
    validator_trust: int = 0
    emission: int = 0
    weights: dict[int, int] = field(default_factory=dict)
    bonds: dict[int, int] = field(default_factory=dict)
    endpoint: Endpoint | None = None


@dataclass(slots=True)
class Subnet:
    """A subnet: owner, hyperparameters, registration price, pending emission, neurons.

    ``uid_of`` indexes ``neurons`` by hotkey; it is derived (not encoded) and kept in step by
    :meth:`place`.
    """

    netuid: int
    owner: bytes
    created_at: int
    hyperparams: SubnetHyperparams
    burn: int
    registrations: int = 0
    pending_emission: int = 0
    epochs_run: int = 0
    last_epoch_block: int = 0
    neurons: list[Neuron] = field(default_factory=list)
    commits: dict[bytes, Commit] = field(default_factory=dict)
    uid_of: dict[bytes, int] = field(default_factory=dict)

    def neuron_of(self, hotkey: bytes) -> Neuron | None:
        """The neuron ``hotkey`` holds here, if any."""
        uid = self.uid_of.get(hotkey)
        return None if uid is None else self.neurons[uid]

    def place(self, neuron: Neuron) -> None:
        """Put ``neuron`` in its uid slot (appending a new slot or replacing the holder)."""
        if neuron.uid == len(self.neurons):
            self.neurons.append(neuron)
        else:
            del self.uid_of[self.neurons[neuron.uid].hotkey]
            self.neurons[neuron.uid] = neuron
        self.uid_of[neuron.hotkey] = neuron.uid


@dataclass(frozen=True, slots=True)
class SupplyBreakdown:
    """Where every issued unit is. ``accounted`` must always equal ``issuance``."""

    issuance: int
    balances: int
    stake: int
    burned: int
    pending: int

    @property
    def accounted(self) -> int:
        """balances + stake + burned + pending emission."""
        return self.balances + self.stake + self.burned + self.pending


@dataclass(slots=True)
class LedgerState:
    """The whole state after block ``height``.

    ``stakes`` maps hotkey -> coldkey -> units (entries > 0 only); ``owners`` maps each hotkey
    ever registered to its coldkey, permanently. ``issuance`` counts every unit ever created
    (genesis, emission, faucet); ``burned`` every unit destroyed (registration, subnet lock).
    """

    genesis: Genesis
    chain_id: bytes
    height: int = 0
    issuance: int = 0
    burned: int = 0
    accounts: dict[bytes, Account] = field(default_factory=dict)
    owners: dict[bytes, bytes] = field(default_factory=dict)
    stakes: dict[bytes, dict[bytes, int]] = field(default_factory=dict)
    subnets: dict[int, Subnet] = field(default_factory=dict)

    def balance(self, key: bytes) -> int:
        """The balance of ``key`` (0 for an unknown key); never creates an account."""
        account = self.accounts.get(key)
        return 0 if account is None else account.balance

    def nonce(self, key: bytes) -> int:
        """The next sequence number ``key`` must use."""
        account = self.accounts.get(key)
        return 0 if account is None else account.nonce

    def knows(self, key: bytes) -> bool:
        """Whether ``key`` has a balance, has sent a transaction, or is a registered hotkey."""
        account = self.accounts.get(key)
        return (account is not None and (account.balance > 0 or account.nonce > 0)) \
            or key in self.owners

    def account_for_update(self, key: bytes) -> Account:
        """The account of ``key``, created if missing (call only once a change is certain)."""
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = Account()
        return account

    def hotkey_stake(self, hotkey: bytes) -> int:
        """Total units staked on ``hotkey`` by all coldkeys."""
        return sum(self.stakes.get(hotkey, {}).values())

    def stake_of(self, hotkey: bytes, coldkey: bytes) -> int:
        """Units ``coldkey`` has staked on ``hotkey``."""
        return self.stakes.get(hotkey, {}).get(coldkey, 0)

    def add_stake(self, hotkey: bytes, coldkey: bytes, amount: int) -> None:
        """Change the ``(hotkey, coldkey)`` stake by ``amount`` (may be negative); drops zeros."""
        per_hotkey = self.stakes.setdefault(hotkey, {})
        total = per_hotkey.get(coldkey, 0) + amount
        if total:
            per_hotkey[coldkey] = total
        else:
            per_hotkey.pop(coldkey, None)
            if not per_hotkey:
                del self.stakes[hotkey]

    def is_registered_anywhere(self, hotkey: bytes) -> bool:
        """Whether ``hotkey`` holds a uid on any subnet."""
        return any(hotkey in subnet.uid_of for subnet in self.subnets.values())

    def supply(self) -> SupplyBreakdown:
        """Sum every place units can be (O(state size); for checks and tests)."""
        return SupplyBreakdown(
            issuance=self.issuance,
            balances=sum(a.balance for a in self.accounts.values()),
            stake=sum(sum(per.values()) for per in self.stakes.values()),
            burned=self.burned,
            pending=sum(s.pending_emission for s in self.subnets.values()),
        )


def genesis_state(genesis: Genesis) -> LedgerState:
    """The state at height 0: genesis balances, nothing else."""
    state = LedgerState(genesis=genesis, chain_id=genesis.chain_id)
    for address, amount in genesis.balances:
        state.account_for_update(decode_address(address)).balance = amount
        state.issuance += amount
    return state
