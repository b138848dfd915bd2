"""Building the wire request of a routed prompt, and its continuation after a broken stream.

Pure functions: the router's caller gives a prompt string or chat messages and sampling
parameters; :func:`build_request` validates them into a :class:`GenerateRequest` (raising
:class:`RouterInputError` naming the field), and :func:`continuation` makes the request that
resumes an answer on another miner from the text already delivered.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from protocol.errors import MalformedError, PayloadTooLargeError
from protocol.messages import (
    MAX_STOP,
    MAX_STOP_LEN,
    MAX_TOKENS_LIMIT,
    ChatMessage,
    GenerateRequest,
    Role,
)
from router.errors import RouterInputError

__all__ = ["Prompt", "build_request", "continuation"]

#: What the router accepts as the thing to answer: a prompt, or chat messages as mappings
#: (``{"role": ..., "content": ...}``) or :class:`ChatMessage` values.
Prompt = str | Sequence[Mapping[str, Any] | ChatMessage]

_ROLES = ("system", "user", "assistant")


def _message(item: Mapping[str, Any] | ChatMessage, index: int) -> ChatMessage:
    if isinstance(item, ChatMessage):
        return item
    if not isinstance(item, Mapping):
        raise RouterInputError(f"messages[{index}] must be an object with role and content",
                               param=f"messages[{index}]")
    role, content = item.get("role"), item.get("content")
    if role not in _ROLES:
        raise RouterInputError(f"messages[{index}].role must be one of {', '.join(_ROLES)}",
                               param=f"messages[{index}].role")
    if not isinstance(content, str):
        raise RouterInputError(f"messages[{index}].content must be a string",
                               param=f"messages[{index}].content")
    return ChatMessage(role=cast(Role, role), content=content)


def build_request(prompt: Prompt, *, max_tokens: int = 64, temperature: float = 0.0,
                  top_p: float = 1.0, seed: int | None = None,
                  stop: Sequence[str] = ()) -> GenerateRequest:
    """The ``generate`` request for ``prompt`` (a string, or a non-empty list of messages).

    Raises:
        RouterInputError: a field is out of range or of the wrong type; ``param`` names it.
    """
    checks: tuple[tuple[str, bool], ...] = (
        ("max_tokens", isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
         and 1 <= max_tokens <= MAX_TOKENS_LIMIT),
        ("temperature", _number(temperature) and 0.0 <= temperature <= 2.0),
        ("top_p", _number(top_p) and 0.0 <= top_p <= 1.0),
        ("seed", seed is None or (isinstance(seed, int) and not isinstance(seed, bool)
                                  and 0 <= seed < 2**63)),
        ("stop", len(stop) <= MAX_STOP and all(isinstance(s, str) and 1 <= len(s) <= MAX_STOP_LEN
                                               for s in stop)),
    )
    for name, ok in checks:
        if not ok:
            raise RouterInputError(_RANGES[name], param=name)
    if isinstance(prompt, str):
        text, messages = prompt, None
    elif isinstance(prompt, Sequence) and prompt:
        items = cast(Sequence[Mapping[str, Any] | ChatMessage], prompt)
        text, messages = None, [_message(m, i) for i, m in enumerate(items)]
    else:
        raise RouterInputError("give a prompt string or a non-empty list of messages",
                               param="messages")
    try:
        return _checked(GenerateRequest(
            prompt=text, messages=messages, max_tokens=max_tokens,
            temperature=float(temperature), top_p=float(top_p), seed=seed, stop=list(stop)))
    except (MalformedError, PayloadTooLargeError) as exc:
        field_path = str(exc).split(":", 1)[0] if ":" in str(exc) else None
        raise RouterInputError(f"invalid request: {exc}", param=field_path) from None


def _checked(request: GenerateRequest) -> GenerateRequest:
    """``request`` if a miner would accept its fields (lengths, ranges), else raise.

    Messages are bound-checked when decoded, so the check is a round trip through the codec:
    exactly what the miner will run.
    """
    GenerateRequest.decode(request.encode())
    return request


_RANGES = {
    "max_tokens": f"max_tokens must be an integer in [1, {MAX_TOKENS_LIMIT}]",
    "temperature": "temperature must be a number in [0, 2]",
    "top_p": "top_p must be a number in [0, 1]",
    "seed": "seed must be an integer in [0, 2**63)",
    "stop": f"stop takes at most {MAX_STOP} strings of 1..{MAX_STOP_LEN} characters",
}


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def continuation(original: GenerateRequest, delivered: str,
                 used_tokens: int) -> GenerateRequest | None:
    """The request that continues ``original`` after ``delivered`` text on another miner.

    A prompt request gets the delivered text appended to its prompt; a chat request gets an
    assistant message holding it (an assistant prefix), so the next miner continues the same
    answer. ``max_tokens`` shrinks by the tokens already used. Returns ``None`` when no token
    is left or the longer prompt would exceed the wire limits.
    """
    remaining = original.max_tokens - used_tokens
    if remaining < 1:
        return None
    try:
        if original.prompt is not None:
            return _checked(dataclasses.replace(original, prompt=original.prompt + delivered,
                                                max_tokens=remaining))
        messages = [*(original.messages or []), ChatMessage(role="assistant", content=delivered)]
        return _checked(dataclasses.replace(original, messages=messages, max_tokens=remaining))
    except (MalformedError, PayloadTooLargeError):
        return None
