"""The router: send each prompt across the best-ranked miners (``from router import Router``).

``router.Router`` (router/router.py) is the network layer applications use; ``router/gateway.py``
serves it as an OpenAI-compatible HTTP API. Below them sits the decision core, which decides
which miners get a prompt, in what order, and what to answer.

Sans-IO: every module here is pure computation or a small state machine over an injected
clock and seeded ``numpy.random.Generator``; the network layer (queries, streams, timers)
calls into them.

    candidates   Candidate, eligibility by consensus, per-request Requirements, CandidatePool
    health       HealthTracker: EWMAs of TTFT / latency / errors / wrong answers, p95 TTFT
    breaker      CircuitBreaker: escalating ejection, one half-open probe, shared by all requests
    budget       RetryBudget: retries + hedges <= ratio x primaries over a sliding window
    strategies   Planner: best (tiers + P2C), weighted, ensemble -> ordered Plan
    vote         normalise, VoteTally: weighted majority, best-of-n, first valid, early stop
    hedging      hedge_delay: when to fire a hedge, from the miner's p95 TTFT
    errors       RouterError, RouterInputError, NoCandidatesError (under EnsembleError)
    deadlines    first-token, inter-token and total deadlines of a request and its attempts
"""

from router.breaker import BreakerConfig, CircuitBreaker, Permit, State
from router.budget import BudgetConfig, RetryBudget
from router.candidates import (
    ANY,
    Candidate,
    CandidatePool,
    EligibilityConfig,
    Requirements,
    eligible,
    is_eligible,
    meets,
)
from router.deadlines import (
    AttemptDeadlines,
    DeadlineConfig,
    RequestDeadlines,
    request_deadlines,
    ttft_limit,
)
from router.errors import NoCandidatesError, RouterError, RouterInputError
from router.health import HealthConfig, HealthTracker, MinerHealth
from router.hedging import HedgeConfig, hedge_delay
from router.router import Router
from router.strategies import Plan, Planner, Strategy, StrategyConfig, score, standing
from router.vote import Ballot, VoteResult, VoteTally, non_empty, normalise

__all__ = [
    "ANY",
    "AttemptDeadlines",
    "Ballot",
    "BreakerConfig",
    "BudgetConfig",
    "Candidate",
    "CandidatePool",
    "CircuitBreaker",
    "DeadlineConfig",
    "EligibilityConfig",
    "HealthConfig",
    "HealthTracker",
    "HedgeConfig",
    "MinerHealth",
    "NoCandidatesError",
    "Permit",
    "Plan",
    "Planner",
    "RequestDeadlines",
    "Requirements",
    "RetryBudget",
    "Router",
    "RouterError",
    "RouterInputError",
    "State",
    "Strategy",
    "StrategyConfig",
    "VoteResult",
    "VoteTally",
    "eligible",
    "hedge_delay",
    "is_eligible",
    "meets",
    "non_empty",
    "normalise",
    "request_deadlines",
    "score",
    "standing",
    "ttft_limit",
]
