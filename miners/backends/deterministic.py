"""``echo-math``: an exact, deterministic arithmetic backend without torch.

It answers prompts of the form ``"a+b="`` (also ``-`` and ``*``, integers of up to 64 digits,
spaces allowed) with the exact result, one character per "token"; anything else gets an empty
completion. For chat requests the last message is the prompt. It is the reference "perfect
miner" for benchmarks, the demo and fast tests, and keeps the whole backend contract (stop
strings, ``max_tokens``, cancellation, streaming) without a model.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator

from miners.backends import Delta
from miners.backends.stopping import Assembler
from protocol.messages import (
    MAX_TOKENS_LIMIT,
    FinishReason,
    GenerateRequest,
    GenerateResponse,
    InfoResponse,
)

MODEL_NAME = "echo-math"
#: No model behind it, so any prompt the wire allows fits; reported as the context length.
CONTEXT_LENGTH = 1 << 20

_EXPRESSION = re.compile(r"^\s*(-?\d{1,64})\s*([+\-*])\s*(-?\d{1,64})\s*=\s*$")


def solve(prompt: str) -> str:
    """The exact answer to an ``a+b=``-style prompt, or ``""`` for anything else."""
    match = _EXPRESSION.match(prompt)
    if match is None:
        return ""
    a, op, b = int(match[1]), match[2], int(match[3])
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


class EchoMathBackend:
    """The ``echo-math`` backend (see the module docstring); stateless and thread-free."""

    def info(self) -> InfoResponse:
        """Describe the backend: exact arithmetic, no chat template."""
        return InfoResponse(model=MODEL_NAME, context_length=CONTEXT_LENGTH,
                            capabilities=["math"], max_tokens=MAX_TOKENS_LIMIT, chat=False)

    async def generate(self, request: GenerateRequest,
                       cancelled: threading.Event) -> GenerateResponse:
        """Return the whole answer at once."""
        async for delta in self.stream(request, cancelled):
            if delta.final is not None:
                return delta.final
        raise AssertionError("unreachable: stream() always ends with a final delta")

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Yield the answer one character at a time, then the final delta."""
        prompt = request.prompt if request.prompt is not None else (
            request.messages[-1].content if request.messages else "")
        answer = solve(prompt)
        out = Assembler(request.stop)
        produced = 0
        reason: FinishReason = "stop"
        while True:
            if cancelled.is_set():
                reason = "cancelled"
                break
            if produced == request.max_tokens:
                reason = "length"
                break
            produced += 1
            if produced > len(answer):  # the end-of-sequence "token"
                break
            piece = out.feed(answer[:produced])
            if piece:
                yield Delta(piece)
            if out.stopped:
                break
        last = "" if out.stopped else out.close(answer[:min(produced, len(answer))])
        yield Delta(last, GenerateResponse(text=out.text, prompt_tokens=len(prompt),
                                           completion_tokens=produced, finish_reason=reason,
                                           model=MODEL_NAME))

    async def aclose(self) -> None:
        """Nothing to release."""
