"""A fault-injection fleet for router tests: misbehaving miners on a real dev chain.

Two kinds of faulty miner, both real servers on 127.0.0.1:

* backends behind the real :class:`MinerServer` (signed answers, real streams), whose answers
  are bad: ``ErrorBackend`` (HTTP 500 via ``HandlerError``), ``SlowFirstTokenBackend``,
  ``SlowTokensBackend``, plus ``GarbageBackend`` and ``HangingBackend`` from
  :mod:`miners.backends.faulty`;
* raw aiohttp servers for what a well-behaved server cannot do (:class:`RawMiner`): reset the
  connection, cut a signed stream after valid frames, accept a request and never send a byte,
  stall after the first token. They answer ``info`` properly, so the router's directory
  lists them like any miner.

:class:`ContinuingMathBackend` is the healthy miner of these tests: exact ``a+b=`` answers like
``echo-math``, which also continues an answer from a prefix (a prompt ``"12+34=4"`` or an
assistant-prefix message ``"4"`` gives ``"6"``), as a language model does; that is what the
router's resume of a cut stream relies on.

:func:`start_fleet` registers every miner on a fresh dev chain, publishes its endpoint, sets
one validator's weights (uniform by default) and runs an epoch so consensus gives the miners
incentive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from miners.admission import AdmissionConfig
from miners.backends import Backend, Delta
from miners.backends.deterministic import EchoMathBackend
from miners.model_routes import add_model_routes
from miners.server import MinerServer, ServerConfig
from protocol import envelope, stream
from protocol.errors import HandlerError
from protocol.keys import Keypair
from protocol.ledger import UNITS_PER_TOKEN as T
from protocol.ledger.hyperparams import SubnetHyperparams
from protocol.ledger.interface import EmbeddedLedger
from protocol.ledger.testing import ChainDriver, named_key
from protocol.messages import (
    MAX_TOKENS_LIMIT,
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    InfoResponse,
)
from protocol.ratelimit import RateLimitConfig
from router.config import RouterConfig
from router.router import Router

_EXPRESSION = re.compile(r"^\s*(-?\d{1,64})\s*([+\-*])\s*(-?\d{1,64})\s*=(.*)$", re.DOTALL)


def solve_with_prefix(text: str) -> tuple[str, str] | None:
    """``(answer, prefix)`` for ``"a+b=PREFIX"``, or ``None`` if it is not an expression."""
    match = _EXPRESSION.match(text)
    if match is None:
        return None
    a, op, b = int(match[1]), match[2], int(match[3])
    return str(a + b if op == "+" else a - b if op == "-" else a * b), match[4]


def prompt_of(request: GenerateRequest) -> str:
    """The prompt, or the chat's last user message followed by an assistant prefix if any."""
    if request.prompt is not None:
        return request.prompt
    messages = request.messages or []
    if len(messages) >= 2 and messages[-1].role == "assistant":
        return messages[-2].content + messages[-1].content
    return messages[-1].content if messages else ""


class ContinuingMathBackend(EchoMathBackend):
    """``echo-math`` that also continues a started answer (see the module docstring)."""

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Stream the rest of the answer one character at a time."""
        solved = solve_with_prefix(prompt_of(request))
        answer = ""
        if solved is not None and solved[0].startswith(solved[1]):
            answer = solved[0][len(solved[1]):]
        produced = 0
        for char in answer[:request.max_tokens]:
            if cancelled.is_set():
                break
            produced += 1
            yield Delta(char)
        reason = "length" if len(answer) > request.max_tokens else "stop"
        yield Delta("", GenerateResponse(text=answer[:produced], prompt_tokens=len(
            prompt_of(request)), completion_tokens=produced, finish_reason=reason,
            model="continuing-math"))


class ErrorBackend(EchoMathBackend):
    """Fails every generation with a signed HTTP 500 (``HandlerError``); counts the calls.

    ``model`` names it in ``info``, so a request can require exactly this miner.
    """

    def __init__(self, model: str = "echo-math") -> None:
        self.model = model
        self.calls = 0

    def info(self) -> InfoResponse:
        """Like echo-math, under ``model``."""
        return dataclasses.replace(super().info(), model=self.model)

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Raise before the first token."""
        self.calls += 1
        raise HandlerError("injected failure")
        yield Delta("")  # pragma: no cover - makes this an async generator


class SlowFirstTokenBackend(ContinuingMathBackend):
    """Waits ``delay_s`` (or until released) before its first token, then answers right."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Sleep, then stream the exact answer."""
        await asyncio.sleep(self.delay_s)
        async for delta in super().stream(request, cancelled):
            yield delta


class EmptyPiecesBackend(ContinuingMathBackend):
    """Sends ``count`` pieces with no text, ``gap_s`` apart, before answering right."""

    def __init__(self, count: int, gap_s: float) -> None:
        self.count = count
        self.gap_s = gap_s

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Stall behind empty pieces, then stream the exact answer."""
        for _ in range(self.count):
            yield Delta("")
            await asyncio.sleep(self.gap_s)
        async for delta in super().stream(request, cancelled):
            yield delta


class SlowTokensBackend(ContinuingMathBackend):
    """Sends every token ``gap_s`` after the previous one (a slow but steady miner)."""

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s

    async def stream(self, request: GenerateRequest,
                     cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Stream the exact answer slowly."""
        async for delta in super().stream(request, cancelled):
            await asyncio.sleep(self.gap_s)
            yield delta


# --- raw miners --------------------------------------------------------------------------------

RawBehaviour = Callable[[web.Request, envelope.SignedRequest, GenerateRequest, Keypair],
                        Awaitable[web.StreamResponse]]


def _signed(keypair: Keypair, signed: envelope.SignedRequest, body: bytes) -> web.Response:
    receipt = envelope.Receipt.issue(keypair, signed.digest, 200, envelope.sha256(body),
                                     _now_ms())
    return web.Response(body=body, headers={"Content-Type": envelope.MSGPACK_TYPE,
                                            **receipt.headers()})


def _now_ms() -> int:
    from protocol.clock import SystemClock  # noqa: PLC0415 - tests only

    return SystemClock().now_ms()


def answer_frames(keypair: Keypair, signed: envelope.SignedRequest,
                  request: GenerateRequest) -> tuple[list[bytes], bytes]:
    """The DATA frames of the exact answer (one per character, the last with the finish
    reason) and the signed trailer, as a correct miner would send them."""
    solved = solve_with_prefix(prompt_of(request))
    answer = solved[0] if solved is not None else ""
    signer = stream.StreamSigner(keypair, signed.digest)
    frames = []
    for i, char in enumerate(answer):
        last = i == len(answer) - 1
        chunk = GenerateChunk(index=i, text=char, finish_reason="stop" if last else None,
                              prompt_tokens=len(prompt_of(request)) if last else None,
                              completion_tokens=len(answer) if last else None)
        frames.append(signer.frame(stream.DATA, chunk.encode()))
    trailer, _ = signer.trailer(200, _now_ms())
    return frames, trailer


async def reset_connection(request: web.Request, signed: envelope.SignedRequest,
                           message: GenerateRequest, keypair: Keypair) -> web.StreamResponse:
    """Close the socket without a byte of answer (a crashed process, a reset)."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def never_answer(request: web.Request, signed: envelope.SignedRequest,
                       message: GenerateRequest, keypair: Keypair) -> web.StreamResponse:
    """Accept the request and never send a byte, not even headers."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def cut_after_first_token(request: web.Request, signed: envelope.SignedRequest,
                                message: GenerateRequest, keypair: Keypair) -> web.StreamResponse:
    """Send the first valid signed frame of the exact answer, then drop the connection."""
    frames, _ = answer_frames(keypair, signed, message)
    response = web.StreamResponse(headers={"Content-Type": envelope.STREAM_TYPE})
    await response.prepare(request)
    await response.write(frames[0])
    assert request.transport is not None
    request.transport.abort()
    return response


async def stall_after_first_token(request: web.Request, signed: envelope.SignedRequest,
                                  message: GenerateRequest, keypair: Keypair,
                                  ) -> web.StreamResponse:
    """Send the first valid frame, then nothing more (the connection stays open)."""
    frames, _ = answer_frames(keypair, signed, message)
    response = web.StreamResponse(headers={"Content-Type": envelope.STREAM_TYPE})
    await response.prepare(request)
    await response.write(frames[0])
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class RawMiner:
    """A bare aiohttp miner: verifies signed requests, answers ``info`` properly and serves
    ``generate_stream`` with ``behaviour``. Start with ``async with``; ``url`` once started."""

    def __init__(self, keypair: Keypair, behaviour: RawBehaviour) -> None:
        self.keypair = keypair
        self._behaviour = behaviour
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0
        self.calls = 0
        self.info_calls = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        header, signature = envelope.parse_request_headers(request.path, request.headers)
        signed = envelope.verify_request(header, signature, body, self.keypair.public_key.raw)
        route = request.match_info["route"]
        if route == "info":
            self.info_calls += 1
            info = InfoResponse(model="raw", context_length=4096, capabilities=["math"],
                                max_tokens=MAX_TOKENS_LIMIT, chat=False)
            return _signed(self.keypair, signed, info.encode())
        self.calls += 1
        return await self._behaviour(request, signed, GenerateRequest.decode(body), self.keypair)

    async def __aenter__(self) -> RawMiner:
        app = web.Application()
        app.router.add_post("/v1/{route}", self._handle)
        # Handlers that never answer are cancelled when the client goes away.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --- the fleet ---------------------------------------------------------------------------------

#: A miner of the fleet: a backend served by a real MinerServer, or a raw behaviour.
MinerSpec = Backend | RawBehaviour


@dataclass
class Fleet:
    """A dev chain with one validator and serving miners."""

    driver: ChainDriver
    ledger: EmbeddedLedger
    urls: dict[str, str]
    servers: dict[str, MinerServer | RawMiner]

    def hotkey(self, name: str) -> str:
        """The hotkey address of miner ``name``."""
        return named_key(f"{name}-hot").address

    def name_of(self, hotkey: str) -> str:
        """The fleet name of a hotkey address."""
        return next(n for n in self.urls if self.hotkey(n) == hotkey)

    async def block(self) -> None:
        """Produce the next block through the async ledger (wakes the router's sync)."""
        self.driver.now_ms += 1000
        await self.ledger.produce_block(self.driver.now_ms)


ROUTER_KEY = named_key("router-hot")


async def start_fleet(tmp_path: Path, stack: AsyncExitStack, miners: Mapping[str, MinerSpec], *,
                      weights: Mapping[str, int] | None = None,
                      max_concurrent: int = 64) -> Fleet:
    """Register and serve ``miners`` on a new dev chain; one validator weights them.

    ``weights`` (name -> u16 weight; default 1000 each) are set by the validator, then an epoch
    runs so the miners' incentive follows them; ``{}`` sets no weights (a cold subnet).
    """
    hyper = SubnetHyperparams(tempo=2, weights_rate_limit=0, immunity_period=0, min_burn=T,
                              activity_cutoff=1000)
    names = list(miners)
    drv = ChainDriver.open(tmp_path / "chain.db", funded=("owner", "v1", *names),
                           hyperparams=hyper)
    drv.apply("owner", "create_subnet", max_lock_cost=T)
    for name in ("v1", *names):
        drv.send(name, "register", 1, named_key(f"{name}-hot"), max_burn=10 * T)
    drv.block()
    drv.send("v1", "stake", named_key("v1-hot").address, 100 * T)
    urls: dict[str, str] = {}
    servers: dict[str, MinerServer | RawMiner] = {}
    for name, spec in miners.items():
        key = named_key(f"{name}-hot")
        server: MinerServer | RawMiner
        if is_backend(spec):
            # The router is one caller sending hundreds of requests a second: the per-caller
            # limit a miner keeps for validators would throttle it (as it should in production,
            # where miners raise it for the routers they serve).
            config = ServerConfig(admission=AdmissionConfig(max_concurrent=max_concurrent),
                                  rate_limit=RateLimitConfig(rate=1e6, burst=1e6))
            server = MinerServer(key, config)
            add_model_routes(server, spec)  # type: ignore[arg-type]
        else:
            server = RawMiner(key, spec)  # type: ignore[arg-type]
        await stack.enter_async_context(server)
        drv.send(f"{name}-hot", "serve", 1, "127.0.0.1", server.port, 1)
        urls[name], servers[name] = server.url, server
    drv.run_to(drv.chain.subnet(1).next_epoch_block)  # the epoch grants v1 its permit
    chosen = dict.fromkeys(names, 1000) if weights is None else dict(weights)
    if chosen:
        uids = {drv.chain.neuron(1, named_key(f"{n}-hot").address).uid: w
                for n, w in chosen.items()}
        drv.send("v1-hot", "set_weights", 1, list(uids), list(uids.values()))
        drv.block()
        drv.run_to(drv.chain.subnet(1).next_epoch_block)
    ledger = EmbeddedLedger(drv.chain)
    stack.push_async_callback(ledger.aclose)
    return Fleet(drv, ledger, urls, servers)


def is_backend(spec: object) -> bool:
    """Whether a miner spec is a backend (served by MinerServer) rather than a raw behaviour."""
    return hasattr(spec, "info") and hasattr(spec, "stream")


#: Seconds a bounded poll may take before a test calls it a hang.
POLL_LIMIT_S = 5.0


async def open_router(stack: AsyncExitStack, fleet: Fleet, *, seed: int,
                      **config: object) -> Router:
    """A started router over ``fleet``, signing as :data:`ROUTER_KEY`, seeded with ``seed``."""
    cfg = RouterConfig(seed=seed, **config)  # type: ignore[arg-type]
    return await stack.enter_async_context(Router(ledger=fleet.ledger, keypair=ROUTER_KEY,
                                                  config=cfg))


async def poll(condition: Callable[[], object], what: str) -> None:
    """Bounded polling of a state the router reaches on its own clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + POLL_LIMIT_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {POLL_LIMIT_S} s: {what}")
        await asyncio.sleep(0.005)
