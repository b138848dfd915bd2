"""The router's configuration: one frozen value, passed in (entry points read flags and files).

Every part of the decision core keeps its own config type (eligibility, scoring, health, breaker,
budget, hedging, deadlines); :class:`RouterConfig` gathers them with the network layer's own
settings (metagraph sync, ``info`` queries, audits, voting) so a router is described by one value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from protocol.client import ClientConfig
from protocol.errors import ConfigError
from router.breaker import BreakerConfig
from router.budget import BudgetConfig
from router.candidates import EligibilityConfig
from router.deadlines import DeadlineConfig
from router.health import HealthConfig
from router.hedging import HedgeConfig
from router.stall import StallConfig
from router.strategies import Strategy, StrategyConfig

#: How an ensemble's answers become one (see :class:`router.vote.VoteTally`).
VOTE_METHODS = ("majority", "best_of_n", "first_valid")


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Spot checks of single-miner answers, so a fast wrong miner loses traffic under ``best``.

    A deterministic request (temperature 0) answered by one miner is sometimes re-asked, in the
    background and after the caller has its answer, of ``auditors`` other miners; a weighted
    majority of the answers records agreement or dissent in the health tracker, exactly as an
    ensemble vote does. A miner's first ``probation`` judged answers are always audited (a new
    or unknown miner is checked before it can take a large share), later ones at ``rate``.
    Audits draw on their own budget, so they never starve failover of retry tokens.
    """

    enabled: bool = True
    # Three verdicts: one wrong answer already drops a miner out of the top tier (a 36 % score
    # cut), three agreeing ones are enough to trust it at the sampling rate afterwards.
    probation: int = 3
    # One answer in twenty keeps checking miners that passed probation, at 10 % extra load.
    rate: float = 0.05
    auditors: int = 2
    # When the first auditors disagree with each other, ask up to this many in all.
    max_auditors: int = 4
    # Audit requests per primary request over the budget's window, plus a floor for quiet times.
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(
        ratio=0.25, min_extra=20, window_s=10.0))

    def __post_init__(self) -> None:
        if self.probation < 0 or not 0.0 <= self.rate <= 1.0:
            raise ConfigError("audit probation must be >= 0 and rate in [0, 1]")
        if not 1 <= self.auditors <= self.max_auditors:
            raise ConfigError("need 1 <= auditors <= max_auditors")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Everything one router needs, passed in.

    Attributes:
        netuid: the subnet routed to.
        strategy: the default strategy of a request that names none.
        eligibility, strategies, health, breaker, budget, hedge, deadlines: the decision core's
            settings (see their modules).
        audit: spot checks of single-miner answers.
        stall: how the router measures its own event loop's pauses (kept off miners' deadlines).
        vote_method: ``majority``, ``best_of_n`` or ``first_valid`` for ensembles.
        min_agree: miners that must give the same answer for a vote to count as agreement (and
            for agreement or dissent to be recorded); also the early-stop quorum.
        client: the signed client's pool and limits.
        connect_s: TCP connect deadline of one attempt.
        info_timeout_s: deadline of one ``info`` query during metagraph sync.
        info_retry_s: a miner whose ``info`` failed is asked again after this long.
        resync_s: the metagraph is re-read at least this often, even when no block is seen.
        cold_start: while no miner of the subnet has any incentive yet (no epoch has run), route
            to every serving miner as if validators rated it neutrally; otherwise nothing would
            be eligible on a new subnet.
        seed: seeds the router's random generator (``None``: from the OS).
    """

    netuid: int = 1
    strategy: Strategy = Strategy.BEST
    eligibility: EligibilityConfig = field(default_factory=EligibilityConfig)
    strategies: StrategyConfig = field(default_factory=StrategyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    # 10 % extra attempts, with a floor of ten per ten seconds (one a second, like Finagle's
    # minimum retries per second) so a burst of failures right after start-up, before the
    # window holds many primaries, can still fail over.
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(
        ratio=0.1, min_extra=10, window_s=10.0))
    hedge: HedgeConfig = field(default_factory=HedgeConfig)
    deadlines: DeadlineConfig = field(default_factory=DeadlineConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    stall: StallConfig = field(default_factory=StallConfig)
    vote_method: str = "majority"
    min_agree: int = 2
    client: ClientConfig = field(default_factory=ClientConfig)
    # Loopback and same-region miners connect in milliseconds; two seconds is a dead host.
    connect_s: float = 2.0
    info_timeout_s: float = 3.0
    info_retry_s: float = 30.0
    # A remote ledger without block notifications is still re-read twice a minute.
    resync_s: float = 30.0
    cold_start: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.vote_method not in VOTE_METHODS:
            raise ConfigError(f"vote_method must be one of {', '.join(VOTE_METHODS)}")
        if self.min_agree < 1:
            raise ConfigError("min_agree must be >= 1")
        for name in ("connect_s", "info_timeout_s", "info_retry_s", "resync_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0")
