"""Model backends: what a miner runs behind the ``generate``/``generate_stream``/``info`` routes.

The contract every backend keeps (torch and transformers are imported only inside the backend
modules that need them, never here):

* ``info()`` describes the model; cheap, no I/O.
* ``stream(request, cancelled)`` is an async iterator of :class:`Delta` pieces produced as tokens
  are decoded. Every delta but the last has ``final is None``; the last one carries the
  finished :class:`GenerateResponse`, and the texts of all deltas concatenate to exactly
  ``final.text``. Leaving the iteration early (``break``, cancellation of the consuming task)
  abandons the request: the backend stops decoding it at its next step.
* ``generate(request, cancelled)`` is ``stream`` without the pieces: it returns the final
  response. Both are coroutines/iterators on the caller's event loop and never block it;
  backends that compute on threads hand results back with ``loop.call_soon_threadsafe``.
* ``cancelled`` is the server's per-request event (set at the deadline or on shutdown); once it
  is set the backend finishes that request with ``finish_reason == "cancelled"`` and the text
  decoded so far.
* ``finish_reason`` is ``"stop"`` for end-of-sequence or a stop string (the text is cut before
  the first stop string, which is not included), ``"length"`` when ``max_tokens`` (or the
  backend's own limit, or the context) ran out.
* Requests the backend cannot serve raise a :class:`protocol.errors.WireError` (for example
  :class:`~protocol.errors.PayloadTooLargeError` for a prompt longer than the context).
* ``aclose()`` stops background work; requests still running finish as ``"cancelled"``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from protocol.messages import GenerateRequest, GenerateResponse, InfoResponse


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece of a completion; the last one carries the finished response."""

    text: str
    final: GenerateResponse | None = None


class Backend(Protocol):
    """A model that answers :class:`GenerateRequest` (see the module docstring for the contract)."""

    def info(self) -> InfoResponse:
        """Describe the served model."""
        ...

    async def generate(self, request: GenerateRequest,
                       cancelled: threading.Event) -> GenerateResponse:
        """Return the finished completion of ``request``."""
        ...

    def stream(self, request: GenerateRequest,
               cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Yield the completion of ``request`` piece by piece; the last delta is final."""
        ...

    async def aclose(self) -> None:
        """Stop background work and release the model."""
        ...


def prompt_text(request: GenerateRequest) -> str:
    """The plain prompt, or chat messages' contents joined by newlines (no chat template)."""
    if request.prompt is not None:
        return request.prompt
    return "\n".join(m.content for m in request.messages or [])
