"""The OpenAI HTTP API as the gateway speaks it, sans-IO: JSON values in, typed requests out,
and the response, chunk and error bodies back.

:func:`parse_chat` and :func:`parse_completion` validate a decoded JSON body field by field and
raise :class:`RouterInputError` naming the field (``param``), so bad input is a 400 with
OpenAI's error shape, never a 500. Model names are aliases of the subnet and a strategy:
``ensemble/<netuid>`` (the router's default strategy) or ``ensemble/<netuid>:<strategy>``.
Extension: a request may carry ``"ensemble": {"k": int}`` (ensemble size).

Differences from OpenAI, on purpose: ``temperature`` defaults to 0 (deterministic answers can
be voted on and audited), tools, function calls, log-probabilities and non-text response
formats are refused with 400 (no miner serves them), and at most ``max_n`` choices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from protocol.messages import MAX_STOP, MAX_TOKENS_LIMIT, ChatMessage, Role
from router.errors import ModelNotFoundError, RouterInputError
from router.strategies import Strategy

__all__ = ["ModelAlias", "OpenAIRequest", "chat_chunk", "chat_completion", "completion_body",
           "completion_chunk", "error_body", "error_type", "model_aliases", "parse_chat",
           "parse_completion", "resolve_model", "usage_body"]

#: Prefix of every model alias the gateway lists.
MODEL_PREFIX = "ensemble/"
_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user",
                           "assistant": "assistant"}
_REFUSED = ("tools", "functions", "tool_choice", "function_call", "logit_bias", "audio",
            "prediction")


@dataclass(frozen=True, slots=True)
class ModelAlias:
    """A model name the gateway serves: a subnet and a strategy (``None``: the default)."""

    name: str
    netuid: int
    strategy: Strategy | None


def model_aliases(netuid: int) -> tuple[ModelAlias, ...]:
    """Every alias of subnet ``netuid``: the plain one, then one per strategy."""
    base = f"{MODEL_PREFIX}{netuid}"
    return (ModelAlias(base, netuid, None),
            *(ModelAlias(f"{base}:{s.value}", netuid, s) for s in Strategy))


def resolve_model(name: object, netuid: int) -> ModelAlias:
    """The alias called ``name``.

    Raises:
        RouterInputError: ``model`` is missing or not a string.
        ModelNotFoundError: no such alias.
    """
    if not isinstance(name, str) or not name:
        raise RouterInputError("model is required", param="model")
    for alias in model_aliases(netuid):
        if alias.name == name:
            return alias
    raise ModelNotFoundError(f"The model '{name[:100]}' does not exist; GET /v1/models lists "
                             "the models served", param="model")


@dataclass(frozen=True, slots=True)
class OpenAIRequest:
    """A validated chat or text completion request."""

    kind: Literal["chat", "completion"]
    model: ModelAlias
    prompt: str | tuple[ChatMessage, ...]
    n: int
    stream: bool
    include_usage: bool
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    k: int | None


@dataclass(frozen=True, slots=True)
class Defaults:
    """Values of fields a request leaves out, and the gateway's own limits."""

    max_tokens: int = 256
    temperature: float = 0.0
    max_n: int = 8


def _require_object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RouterInputError("the request body must be a JSON object")
    return cast(Mapping[str, Any], body)


def _int(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RouterInputError(f"{name} must be an integer in [{low}, {high}]", param=name)
    return value


def _float(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise RouterInputError(f"{name} must be a number in [{low:g}, {high:g}]", param=name)
    return float(value)


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RouterInputError(f"{name} must be a boolean", param=name)
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (not isinstance(stops, list) or len(stops) > MAX_STOP
            or not all(isinstance(s, str) and s for s in stops)):
        raise RouterInputError(f"stop must be a non-empty string or a list of at most {MAX_STOP} "
                               "of them", param="stop")
    return tuple(stops)


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name in _REFUSED:
        value = body.get(name)
        if value not in (None, [], {}, "none", "auto") or (name == "tools" and value):
            raise RouterInputError(f"{name} is not supported by this gateway", param=name)
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs") not in (None, 0):
        raise RouterInputError("log-probabilities are not supported", param="logprobs")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") != "text"):
        raise RouterInputError("only the text response format is supported",
                               param="response_format")


def _common(body: Mapping[str, Any], kind: Literal["chat", "completion"], netuid: int,
            prompt: str | tuple[ChatMessage, ...], defaults: Defaults) -> OpenAIRequest:
    model = resolve_model(body.get("model"), netuid)
    _refuse_unsupported(body)
    n = _int(body, "n", 1, defaults.max_n) or 1
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, Mapping) or not isinstance(
                options.get("include_usage", False), bool):
            raise RouterInputError("stream_options must be an object with a boolean "
                                   "include_usage", param="stream_options")
        if not stream:
            raise RouterInputError("stream_options is only allowed with stream: true",
                                   param="stream_options")
        include_usage = bool(options.get("include_usage", False))
    max_tokens = _int(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
    temperature = _float(body, "temperature", 0.0, 2.0)
    top_p = _float(body, "top_p", 0.0, 1.0)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RouterInputError("seed must be an integer", param="seed")
    extension = body.get("ensemble")
    k = None
    if extension is not None:
        if not isinstance(extension, Mapping):
            raise RouterInputError("ensemble must be an object", param="ensemble")
        k = _int(extension, "k", 1, 16)
    return OpenAIRequest(
        kind=kind, model=model, prompt=prompt, n=n, stream=stream, include_usage=include_usage,
        max_tokens=defaults.max_tokens if max_tokens is None else max_tokens,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        # The wire takes seeds in [0, 2**63): a negative OpenAI seed maps into that range.
        seed=None if seed is None else seed % (2**63), stop=_stop(body), k=k)


def _content(value: object, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            if not (isinstance(part, Mapping) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise RouterInputError("only text content parts are supported",
                                       param=f"messages[{index}].content[{j}]")
            parts.append(part["text"])
        return "".join(parts)
    raise RouterInputError("content must be a string or a list of text parts",
                           param=f"messages[{index}].content")


def parse_chat(body: object, netuid: int, defaults: Defaults = Defaults()) -> OpenAIRequest:
    """Validate a ``POST /v1/chat/completions`` body.

    Raises:
        RouterInputError: a missing or invalid field (``param`` names it).
        ModelNotFoundError: an unknown model alias.
    """
    data = _require_object(body)
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RouterInputError("messages must be a non-empty list", param="messages")
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise RouterInputError("each message must be an object", param=f"messages[{i}]")
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise RouterInputError("role must be system, developer, user or assistant",
                                   param=f"messages[{i}].role")
        messages.append(ChatMessage(role=role, content=_content(item.get("content"), i)))
    return _common(data, "chat", netuid, tuple(messages), defaults)


def parse_completion(body: object, netuid: int,
                     defaults: Defaults = Defaults()) -> OpenAIRequest:
    """Validate a ``POST /v1/completions`` body (one prompt string).

    Raises:
        RouterInputError: a missing or invalid field (``param`` names it).
        ModelNotFoundError: an unknown model alias.
    """
    data = _require_object(body)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RouterInputError("prompt must be a string (one prompt per request)",
                               param="prompt")
    for name in ("echo", "suffix"):
        if data.get(name) not in (None, False, ""):
            raise RouterInputError(f"{name} is not supported", param=name)
    if data.get("best_of") not in (None, 1):
        raise RouterInputError("best_of is not supported; use the :ensemble model",
                               param="best_of")
    return _common(data, "completion", netuid, prompt, defaults)


# --- bodies ------------------------------------------------------------------------------------


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(response_id: str, created: int, model: str,
                    choices: Sequence[tuple[str, str, dict[str, Any] | None]],
                    usage: dict[str, int]) -> dict[str, Any]:
    """A ``chat.completion`` object; ``choices`` are ``(text, finish_reason, provenance)``.

    Each choice carries its provenance in an ``ensemble`` extension field; the top-level
    ``ensemble`` field repeats the first choice's.
    """
    body: dict[str, Any] = {
        "id": response_id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "message": {"role": "assistant", "content": text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": finish, "ensemble": prov}
                    for i, (text, finish, prov) in enumerate(choices)],
        "usage": usage}
    body["ensemble"] = choices[0][2] if choices else None
    return body


def chat_chunk(response_id: str, created: int, model: str, index: int, delta: dict[str, Any],
               finish_reason: str | None, *, provenance: dict[str, Any] | None = None,
               with_usage_field: bool = False) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of one choice."""
    choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None,
                              "finish_reason": finish_reason}
    if provenance is not None:
        choice["ensemble"] = provenance
    body: dict[str, Any] = {"id": response_id, "object": "chat.completion.chunk",
                            "created": created, "model": model, "system_fingerprint": None,
                            "choices": [choice]}
    if with_usage_field:
        body["usage"] = None
    return body


def completion_body(response_id: str, created: int, model: str,
                    choices: Sequence[tuple[str, str, dict[str, Any] | None]],
                    usage: dict[str, int]) -> dict[str, Any]:
    """A ``text_completion`` object (see :func:`chat_completion` for ``choices``)."""
    body: dict[str, Any] = {
        "id": response_id, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish,
                     "ensemble": prov} for i, (text, finish, prov) in enumerate(choices)],
        "usage": usage}
    body["ensemble"] = choices[0][2] if choices else None
    return body


def completion_chunk(response_id: str, created: int, model: str, index: int, text: str,
                     finish_reason: str | None, *, provenance: dict[str, Any] | None = None,
                     with_usage_field: bool = False) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk of one choice."""
    choice: dict[str, Any] = {"index": index, "text": text, "logprobs": None,
                              "finish_reason": finish_reason}
    if provenance is not None:
        choice["ensemble"] = provenance
    body: dict[str, Any] = {"id": response_id, "object": "text_completion", "created": created,
                            "model": model, "system_fingerprint": None, "choices": [choice]}
    if with_usage_field:
        body["usage"] = None
    return body


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str, code: str | None,
               param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type(status), "param": param,
                      "code": code}}
