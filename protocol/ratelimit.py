"""Per-caller token buckets with bounded memory. Pure: time is passed in (seconds)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from protocol.errors import RateLimitedError

# Defaults: a validator querying one miner rarely needs more than a few requests per second;
# the burst absorbs a fan-out step. Operators raise these for trusted applications.
DEFAULT_RATE = 20.0
DEFAULT_BURST = 40.0
DEFAULT_MAX_CALLERS = 100_000


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Refill ``rate`` tokens/s up to ``burst``; remember at most ``max_callers`` buckets."""

    rate: float = DEFAULT_RATE
    burst: float = DEFAULT_BURST
    max_callers: int = DEFAULT_MAX_CALLERS


class RateLimiter:
    """Token bucket per caller key. Forgetting a caller is safe: it restarts with a full bucket,
    and the least recently seen callers are forgotten first."""

    def __init__(self, config: RateLimitConfig = RateLimitConfig()) -> None:
        self._config = config
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._config.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, caller: bytes, now: float, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``caller``'s bucket.

        Raises:
            RateLimitedError: not enough tokens; ``retry_after`` says when there will be.
        """
        cfg = self._config
        tokens, last = self._buckets.pop(caller, (cfg.burst, now))
        tokens = min(cfg.burst, tokens + max(0.0, now - last) * cfg.rate)
        if tokens < cost:
            self._store(caller, tokens, now)
            wait = (cost - tokens) / cfg.rate if cfg.rate > 0 else 3600.0
            raise RateLimitedError("rate limit exceeded for this caller", retry_after=wait)
        self._store(caller, tokens - cost, now)

    def _store(self, caller: bytes, tokens: float, now: float) -> None:
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self._config.max_callers:
            self._buckets.popitem(last=False)
