"""The router's branch of the exception tree (the root is :mod:`protocol.errors`).

    EnsembleError                         protocol/errors.py
    ├── ConfigError                       an invalid router config value (BreakerConfig(...), ...)
    └── RouterError                  500  the router refused a request or could not answer it
        ├── RouterInputError         400  invalid data: a request field, a candidate, a vote
        ├── RouterClosedError        503  the router is not started, or already closed
        ├── NoCandidatesError        503  no usable miner for a request (all ejected, unfit, ...)
        ├── UpstreamError            502  every attempt failed (failover exhausted or no budget)
        │   ├── UpstreamTimeoutError 504  the request's total deadline passed first
        │   └── StreamInterruptedError 502  a stream broke mid-answer and could not be resumed
        └── GatewayError                  refusals of the OpenAI-compatible gateway
            ├── AuthenticationError  401  missing or unknown API key
            ├── ModelNotFoundError   404  an unknown model alias
            └── GatewayRateLimitedError 429  the API key's rate limit is spent

Every ``RouterError`` carries the HTTP ``status`` the gateway answers with, a stable ``code``,
``param`` (the request field at fault, or ``None``), ``retry_after`` (seconds, or ``None``) and
``should_retry``: ``False`` once the router itself already failed over, so a client retrying on
top of it would only multiply load (the gateway sends it as ``x-should-retry``).

The decision core raises only ``ConfigError`` and ``RouterInputError``; an empty
:class:`router.strategies.Plan` is a value, and the network layer raises
``NoCandidatesError`` when it gets one.
"""

from __future__ import annotations

from protocol.errors import EnsembleError

__all__ = [
    "AuthenticationError",
    "GatewayError",
    "GatewayRateLimitedError",
    "ModelNotFoundError",
    "NoCandidatesError",
    "RouterClosedError",
    "RouterError",
    "RouterInputError",
    "StreamInterruptedError",
    "UpstreamError",
    "UpstreamTimeoutError",
]


class RouterError(EnsembleError):
    """Root of the errors the router raises on purpose.

    Attributes:
        status: the HTTP status the gateway answers with.
        code: a stable machine-readable code (``snake_case``).
        param: the request field at fault, or ``None``.
        retry_after: seconds after which a retry may succeed, or ``None``.
        should_retry: whether a client retry is useful (``False`` after router-side failover).
    """

    status = 500
    code = "router_error"
    should_retry = True

    def __init__(self, message: str, *, param: str | None = None,
                 retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class RouterInputError(RouterError, ValueError):
    """Data handed to the router is invalid; the message says which value and why."""

    status = 400
    code = "invalid_request"
    should_retry = False


class RouterClosedError(RouterError):
    """The router is not running (use ``async with Router(...)``)."""

    status = 503
    code = "router_closed"


class NoCandidatesError(RouterError):
    """No miner can take this request now (none eligible, fit, or out of ejection)."""

    status = 503
    code = "no_miners"
    # Nothing changes for a retry within the same second: every miner is ejected or unfit.
    should_retry = False


class UpstreamError(RouterError):
    """Every attempt failed: failover ran out of miners, attempts or retry budget.

    Attributes:
        failures: one ``"hotkey: kind: message"`` line per failed attempt, in order.
    """

    status = 502
    code = "upstream_failed"
    should_retry = False

    def __init__(self, message: str, *, failures: tuple[str, ...] = (),
                 retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, code=code)
        self.failures = failures


class UpstreamTimeoutError(UpstreamError):
    """The request's total deadline passed before an answer was complete."""

    status = 504
    code = "deadline_exceeded"


class StreamInterruptedError(UpstreamError):
    """A streamed answer broke after text was delivered and could not be resumed.

    Attributes:
        partial: the text delivered to the caller before the break.
    """

    code = "stream_interrupted"

    def __init__(self, message: str, *, partial: str, failures: tuple[str, ...] = ()) -> None:
        super().__init__(message, failures=failures)
        self.partial = partial


class GatewayError(RouterError):
    """A refusal by the OpenAI-compatible gateway (authentication, model, rate limit)."""


class AuthenticationError(GatewayError):
    """No API key, or one the gateway does not know."""

    status = 401
    code = "invalid_api_key"
    should_retry = False


class ModelNotFoundError(GatewayError):
    """The requested model is not one of the gateway's aliases."""

    status = 404
    code = "model_not_found"
    should_retry = False


class GatewayRateLimitedError(GatewayError):
    """The API key's rate limit is spent; ``retry_after`` says when a token is back."""

    status = 429
    code = "rate_limit_exceeded"
