"""The model-serving messages every miner speaks: ``generate``, ``generate_stream``, ``info``.

SPEC.md §3.9 lists them field by field; this module is the reference definition. A generate
request carries either a plain ``prompt`` or chat ``messages`` (exactly one of the two).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from protocol.errors import MalformedError
from protocol.schema import Message, bounds

# Generous but finite: a long prompt fits, an abusive one does not (the body cap is 1 MiB).
MAX_PROMPT_BYTES = 256 * 1024
MAX_MESSAGES = 256
MAX_STOP = 8
MAX_STOP_LEN = 64
#: Upper bound of ``max_tokens`` on the wire; a miner may enforce a lower one (``info``).
MAX_TOKENS_LIMIT = 8192

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]

ROUTE_GENERATE = "generate"
ROUTE_GENERATE_STREAM = "generate_stream"
ROUTE_INFO = "info"


@dataclass(frozen=True, slots=True)
class ChatMessage(Message):
    """One turn of a chat."""

    VERSION: ClassVar[int] = 1
    role: Role
    content: str = field(metadata=bounds(max_len=MAX_PROMPT_BYTES))


@dataclass(frozen=True, slots=True)
class GenerateRequest(Message):
    """Generate a completion of ``prompt`` or a reply to ``messages``.

    ``temperature`` 0 means greedy decoding; ``seed`` makes sampling reproducible on one miner.
    """

    VERSION: ClassVar[int] = 1
    prompt: str | None = field(default=None, metadata=bounds(max_len=MAX_PROMPT_BYTES))
    messages: list[ChatMessage] | None = field(
        default=None, metadata=bounds(min_len=1, max_len=MAX_MESSAGES))
    max_tokens: int = field(default=64, metadata=bounds(min=1, max=MAX_TOKENS_LIMIT))
    temperature: float = field(default=0.0, metadata=bounds(min=0.0, max=2.0))
    top_p: float = field(default=1.0, metadata=bounds(min=0.0, max=1.0))
    seed: int | None = field(default=None, metadata=bounds(min=0, max=2**63 - 1))
    stop: list[str] = field(default_factory=list, metadata=bounds(max_len=MAX_STOP))

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise MalformedError("exactly one of prompt and messages must be given")
        if any(not s or len(s) > MAX_STOP_LEN for s in self.stop):
            raise MalformedError(f"stop: each stop string must have 1..{MAX_STOP_LEN} characters")


@dataclass(frozen=True, slots=True)
class GenerateResponse(Message):
    """A finished completion with its token counts."""

    VERSION: ClassVar[int] = 1
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    model: str


@dataclass(frozen=True, slots=True)
class GenerateChunk(Message):
    """One streamed piece: new text, and on the last chunk the finish reason and counts."""

    VERSION: ClassVar[int] = 1
    index: int
    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class InfoRequest(Message):
    """Ask a miner what it serves."""

    VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class InfoResponse(Message):
    """What a miner serves: model name, context length and capability tags (e.g. ``math``)."""

    VERSION: ClassVar[int] = 1
    model: str
    context_length: int
    capabilities: list[str]
    max_tokens: int
    chat: bool
