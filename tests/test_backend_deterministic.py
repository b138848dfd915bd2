"""The torch-free pieces of the model backends: stop strings, ``echo-math``, the registry."""

from __future__ import annotations

import sys
import threading

import pytest

from miners.backends.deterministic import EchoMathBackend, solve
from miners.backends.registry import load_backend
from miners.backends.stopping import Assembler, StopScanner
from miners.models import addition
from protocol.errors import ConfigError
from protocol.messages import ChatMessage, GenerateRequest


def test_scanner_cuts_before_the_first_stop_string() -> None:
    """The earliest occurrence of any stop string wins."""
    scanner = StopScanner(["xy", "b"])
    assert scanner.scan("aaxyb").end == 2
    assert scanner.scan("aaxyb").stopped


def test_scanner_holds_back_a_possible_stop_prefix() -> None:
    """A tail that could still become a stop string is not yet safe to stream."""
    scanner = StopScanner(["END"])
    assert scanner.scan("abcE").end == 3
    assert scanner.scan("abcEN").end == 3
    assert scanner.scan("abcENx").end == 6
    assert scanner.scan("abcENxEND").end == 6


def test_assembler_pieces_concatenate_to_the_final_text() -> None:
    """Streamed pieces never include a stop string and add up to the final text."""
    out = Assembler(["\n\n"])
    pieces = [out.feed(text) for text in ("a", "ab", "ab\n", "ab\nc", "ab\nc\n", "ab\nc\n\nd")]
    assert pieces == ["a", "b", "", "\nc", "", ""]
    assert out.stopped
    assert out.text == "ab\nc"


def test_assembler_holds_back_an_incomplete_character() -> None:
    """A trailing U+FFFD (bytes of a character still arriving) is sent only once resolved."""
    out = Assembler([])
    assert out.feed("ok\ufffd") == "ok"
    assert out.feed("ok\u00e9") == "\u00e9"
    assert out.close("ok\u00e9") == ""


@pytest.mark.parametrize(("prompt", "answer"), [
    ("12+34=", "46"), (" 7 * 6 = ", "42"), ("3-10=", "-7"), ("hello", ""), ("1+2", "")])
def test_solve(prompt: str, answer: str) -> None:
    """echo-math answers a+b / a-b / a*b prompts exactly and nothing else."""
    assert solve(prompt) == answer


def test_echo_math_agrees_with_the_task_definition() -> None:
    """Every held-out addition problem gets exactly its expected answer."""
    assert all(solve(p.prompt) == p.answer for p in addition.held_out_problems())


async def test_echo_math_streams_characters_and_finishes() -> None:
    """One character per piece; the final delta has the counts and the finish reason."""
    deltas = [d async for d in EchoMathBackend().stream(
        GenerateRequest(prompt="99+99="), threading.Event())]
    assert [d.text for d in deltas] == ["1", "9", "8", ""]
    assert deltas[-1].final is not None
    assert deltas[-1].final.text == "198"
    assert deltas[-1].final.finish_reason == "stop"
    assert deltas[-1].final.completion_tokens == 4
    assert deltas[-1].final.prompt_tokens == 6


@pytest.mark.parametrize(("request_kwargs", "text", "reason"), [
    ({"max_tokens": 2}, "19", "length"),
    ({"stop": ["8"]}, "19", "stop"),
    ({"stop": ["98"]}, "1", "stop"),
])
async def test_echo_math_limits(request_kwargs: dict[str, object], text: str,
                                reason: str) -> None:
    """max_tokens ends with ``length``; a stop string cuts the text before it with ``stop``."""
    response = await EchoMathBackend().generate(
        GenerateRequest(prompt="99+99=", **request_kwargs), threading.Event())  # type: ignore[arg-type]
    assert (response.text, response.finish_reason) == (text, reason)


async def test_echo_math_cancelled_and_chat() -> None:
    """A set cancellation event gives ``cancelled``; chat uses the last message."""
    cancelled = threading.Event()
    cancelled.set()
    response = await EchoMathBackend().generate(GenerateRequest(prompt="1+1="), cancelled)
    assert (response.text, response.finish_reason, response.completion_tokens) == (
        "", "cancelled", 0)
    chat = GenerateRequest(messages=[ChatMessage("system", "be exact"),
                                     ChatMessage("user", "20+22=")])
    assert (await EchoMathBackend().generate(chat, threading.Event())).text == "42"


def test_registry_echo_math_needs_no_torch() -> None:
    """``echo-math`` loads without importing torch (a fresh interpreter would show it too)."""
    had_torch = "torch" in sys.modules
    backend = load_backend("echo-math")
    assert isinstance(backend, EchoMathBackend)
    assert backend.info().capabilities == ["math"]
    assert ("torch" in sys.modules) == had_torch


def test_registry_refuses_unknown_specs(tmp_path: object) -> None:
    """Anything but echo-math or a model directory is a configuration error."""
    with pytest.raises(ConfigError):
        load_backend(str(tmp_path))

