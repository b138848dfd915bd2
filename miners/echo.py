"""A deterministic echo service: the reference handler for tests, the demo and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar

from miners.server import CallContext, MinerServer
from protocol.schema import Message, bounds


@dataclass(frozen=True, slots=True)
class EchoRequest(Message):
    """Ask the miner to echo ``text`` back, optionally after ``delay_ms`` of simulated work."""

    VERSION: ClassVar[int] = 1
    text: str = field(metadata=bounds(max_len=65_536))
    delay_ms: int = field(default=0, metadata=bounds(min=0, max=600_000))
    repeat: int = field(default=1, metadata=bounds(min=1, max=1_000))


@dataclass(frozen=True, slots=True)
class EchoResponse(Message):
    """The echoed text and who asked."""

    VERSION: ClassVar[int] = 1
    text: str
    caller: str


@dataclass(frozen=True, slots=True)
class EchoChunk(Message):
    """One streamed piece of an echo."""

    VERSION: ClassVar[int] = 1
    index: int
    text: str


async def echo(ctx: CallContext, request: EchoRequest) -> EchoResponse:
    """Return the text after the requested delay (cancellable at the deadline)."""
    if request.delay_ms:
        await asyncio.sleep(request.delay_ms / 1000)
    return EchoResponse(text=request.text, caller=ctx.caller)


async def echo_stream(ctx: CallContext, request: EchoRequest) -> AsyncIterator[EchoChunk]:
    """Yield the text ``repeat`` times, ``delay_ms`` apart."""
    for index in range(request.repeat):
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        yield EchoChunk(index=index, text=request.text)


def add_echo_routes(server: MinerServer) -> None:
    """Register ``echo`` and ``echo_stream`` on ``server``."""
    server.add_route("echo", EchoRequest, EchoResponse, echo)
    server.add_route("echo_stream", EchoRequest, EchoChunk, echo_stream, kind="stream")
