"""The router's branch of the exception tree (the root is :mod:`protocol.errors`).

    EnsembleError                    protocol/errors.py
    ├── ConfigError                  an invalid router config value (BreakerConfig(...), ...)
    └── RouterError                  the router core refused its input or could not route
        ├── RouterInputError         invalid data: a candidate's fields, a measurement, a vote
        └── NoCandidatesError        no usable miner for a request (all ejected, unfit, ...)

The decision core raises only ``ConfigError`` and ``RouterInputError``; an empty
:class:`router.strategies.Plan` is a value, and the network layer raises
``NoCandidatesError`` (HTTP 503 at the gateway) when it gets one.
"""

from __future__ import annotations

from protocol.errors import EnsembleError

__all__ = ["NoCandidatesError", "RouterError", "RouterInputError"]


class RouterError(EnsembleError):
    """Root of the errors the router raises on purpose."""


class RouterInputError(RouterError, ValueError):
    """Data handed to the router core is invalid; the message says which value and why."""


class NoCandidatesError(RouterError):
    """No miner can take this request now (none eligible, fit, or out of ejection)."""
