"""Misbehaving backends for fault injection in tests and the demo (no torch).

- ``garbage``: answers at once with plausible-looking wrong digits (a fast wrong miner: it claims
  the ``math`` capability, so latency-driven routing would love it).
- ``hang``: accepts the request and never produces a token until it is cancelled.

They keep the backend contract (see :mod:`miners.backends`), so the server, receipts and
streams around them are the real ones; only the answers are bad.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator

from miners.backends import Delta
from protocol.messages import MAX_TOKENS_LIMIT, GenerateRequest, GenerateResponse, InfoResponse

GARBAGE = "garbage"
HANG = "hang"
#: How often a hanging backend checks for cancellation (it holds no lock while waiting).
_POLL_S = 0.05


def _prompt_of(request: GenerateRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    return request.messages[-1].content if request.messages else ""


def wrong_answer(prompt: str) -> str:
    """Deterministic digits derived from the prompt: looks like an answer, almost never is."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return str(100 + int.from_bytes(digest[:2], "big") % 900)


class GarbageBackend:
    """Fast, confident and wrong."""

    def info(self) -> InfoResponse:
        """Claims math like an honest miner."""
        return InfoResponse(model=GARBAGE, context_length=4096, capabilities=["math"],
                            max_tokens=MAX_TOKENS_LIMIT, chat=False)

    async def generate(self, request: GenerateRequest,
                       cancelled: threading.Event) -> GenerateResponse:
        """Return a wrong answer immediately."""
        text = wrong_answer(_prompt_of(request))[: request.max_tokens]
        return GenerateResponse(text=text, prompt_tokens=len(_prompt_of(request)),
                                completion_tokens=len(text), finish_reason="stop", model=GARBAGE)

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Stream the wrong answer one character at a time."""
        final = await self.generate(request, cancelled)
        for char in final.text:
            yield Delta(char)
        yield Delta("", final)

    async def aclose(self) -> None:
        """Nothing to release."""


class HangingBackend:
    """Never answers; finishes as cancelled once the server cancels it."""

    def info(self) -> InfoResponse:
        """Claims math like an honest miner."""
        return InfoResponse(model=HANG, context_length=4096, capabilities=["math"],
                            max_tokens=MAX_TOKENS_LIMIT, chat=False)

    async def generate(self, request: GenerateRequest,
                       cancelled: threading.Event) -> GenerateResponse:
        """Wait until cancelled (the server's deadline), then give up."""
        # The server's cancel signal is a threading.Event (shared with worker threads), which
        # asyncio cannot await: poll it.
        while not cancelled.is_set():  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)
        return GenerateResponse(text="", prompt_tokens=len(_prompt_of(request)),
                                completion_tokens=0, finish_reason="cancelled", model=HANG)

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Yield nothing until cancelled."""
        yield Delta("", await self.generate(request, cancelled))

    async def aclose(self) -> None:
        """Nothing to release."""
