"""The one error body shape on the wire, and its mapping to and from exceptions (SPEC.md §3.7).

Body: msgpack map ``{"v": 1, "code": str, "message": str, "retry_after": float | nil}``, sent with
the HTTP status of the error class. 429 and 503 also carry a ``Retry-After`` header in whole
seconds (rounded up), for generic HTTP clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol import codec
from protocol.errors import WIRE_ERRORS_BY_STATUS, MalformedError, WireError

#: Longest error message put on the wire: enough to name a field, never a traceback.
MAX_MESSAGE = 512


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """A decoded error answer."""

    code: str
    message: str
    retry_after: float | None = None

    def encode(self) -> bytes:
        """Return the msgpack bytes of this error body."""
        return codec.pack({"v": 1, "code": self.code, "message": self.message[:MAX_MESSAGE],
                           "retry_after": self.retry_after})

    @classmethod
    def from_error(cls, error: WireError) -> ErrorBody:
        """Build the body for a wire error."""
        return cls(error.code, error.message, error.retry_after)

    @classmethod
    def decode(cls, data: bytes) -> ErrorBody:
        """Parse an error body (raises MalformedError if it is not one)."""
        value = codec.unpack(data, codec.Limits(max_body=64 * 1024, max_depth=2))
        if not isinstance(value, dict) or value.get("v") != 1:
            raise MalformedError("not an error body")
        code, message, retry = value.get("code"), value.get("message"), value.get("retry_after")
        if not isinstance(code, str) or not isinstance(message, str):
            raise MalformedError("error body lacks code or message")
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, (int, float))
                                  or not 0 <= retry < 86_400):
            raise MalformedError("error body has an invalid retry_after")
        return cls(code, message[:MAX_MESSAGE], None if retry is None else float(retry))


def retry_after_header(seconds: float) -> str:
    """Return the HTTP ``Retry-After`` value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(seconds)))


def error_class_for(status: int) -> type[WireError]:
    """Return the wire error class for an HTTP status (MalformedError for unknown 4xx)."""
    return WIRE_ERRORS_BY_STATUS.get(status, MalformedError)
