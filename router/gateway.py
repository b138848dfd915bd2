"""The OpenAI-compatible HTTP gateway: a thin aiohttp adapter over one :class:`Router`.

Routes:

    POST /v1/chat/completions   chat; JSON, or SSE with ``stream: true`` (ends ``data: [DONE]``)
    POST /v1/completions        text completion; same
    GET  /v1/models             the subnet's model aliases (``ensemble/1``, ``ensemble/1:best``...)
    GET  /health                200 while some miner is usable, else 503 (no key needed)
    GET  /metrics               Prometheus text format (no key needed)

Every answer carries ``x-request-id`` (the caller's, when it sends a sane one). Errors have
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` and status, with
``x-should-retry: false`` when the router already failed over (a client retry would only add
load) and ``Retry-After`` when a wait is known. A streamed answer starts (status 200) only when
its first text is ready, so failures before it are ordinary error statuses; a failure after it
is an SSE ``error`` event, and the stream then ends without ``[DONE]``. Provenance (miners,
scores, vote, receipts) rides in an ``ensemble`` extension field.

API keys (:mod:`router.apikeys`) are checked when a store is given; each key has its own rate
limit. Without a store the gateway is open (loopback development).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from protocol.client import endpoint_url
from router.apikeys import APIKey, APIKeyStore
from router.errors import RouterError, RouterInputError
from router.openai_wire import (
    Defaults,
    OpenAIRequest,
    chat_chunk,
    chat_completion,
    completion_body,
    completion_chunk,
    error_body,
    model_aliases,
    parse_chat,
    parse_completion,
    usage_body,
)
from router.provenance import Completion
from router.router import Router, RouterStream

__all__ = ["Gateway", "GatewayConfig"]

log = logging.getLogger("ensemble.gateway")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_RID = web.RequestKey("request_id", str)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the gateway listens and its request limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    # A long chat fits in 1 MiB of JSON; the wire caps a prompt at 256 KiB anyway.
    max_body: int = 1 << 20
    defaults: Defaults = field(default_factory=Defaults)
    #: Include provenance (the ``ensemble`` field) in answers.
    provenance: bool = True


class Gateway:
    """Serves the OpenAI API over ``router``. Use ``async with Gateway(...) as gw``.

    The constructor does no I/O; :meth:`start` binds, :meth:`aclose` stops. The router's own
    lifecycle stays with the caller.
    """

    def __init__(self, router: Router, config: GatewayConfig | None = None, *,
                 api_keys: APIKeyStore | None = None) -> None:
        self.router = router
        self.config = config or GatewayConfig()
        self._keys = api_keys
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self.config.max_body,
                              middlewares=[self._middleware])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        """Bind and serve."""
        self._runner = web.AppRunner(self.build_app(), access_log=None,
                                     handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        """Stop serving (streams in flight are cancelled)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("gateway not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running gateway."""
        return endpoint_url(self.config.host, self.port)

    # --- cross-cutting -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else f"req_{os.urandom(12).hex()}"
        request[_RID] = rid
        route = request.match_info.route.resource.canonical if (
            request.match_info.route.resource is not None) else "unknown"
        try:
            response = await handler(request)
        except RouterError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:
            code = "not_found" if exc.status == 404 else "method_not_allowed" \
                if exc.status == 405 else "http_error"
            response = web.json_response(error_body(exc.status, exc.reason, code),
                                         status=exc.status)
        except (ConnectionError, asyncio.CancelledError):
            raise  # the caller went away mid-answer
        except Exception:
            log.exception("gateway handler failed (request %s)", rid)
            response = web.json_response(error_body(500, "The gateway failed to answer",
                                                    "internal_error"), status=500)
        if not response.prepared:
            response.headers["x-request-id"] = rid
        self.router.metrics.http.labels(route, str(response.status)).inc()
        return response

    def _authenticate(self, request: web.Request) -> APIKey | None:
        if self._keys is None:
            return None
        return self._keys.authenticate(request.headers.get("Authorization"))

    def _spend(self, key: APIKey | None, cost: int) -> None:
        if key is not None and self._keys is not None:
            self._keys.spend(key, time.monotonic(), float(cost))

    async def _json(self, request: web.Request) -> object:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RouterInputError(f"the request body exceeds {self.config.max_body} bytes",
                                   code="request_too_large") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RouterInputError("We could not parse the JSON body of your request",
                                   code="invalid_json") from None

    # --- models, health, metrics ---------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        return web.json_response({"object": "list", "data": [
            _model_object(a.name) for a in model_aliases(self.router.config.netuid)]},
            headers={"x-request-id": request[_RID]})

    async def _model(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        name = request.match_info["model"]
        if name not in {a.name for a in model_aliases(self.router.config.netuid)}:
            from router.errors import ModelNotFoundError  # noqa: PLC0415 - rare path

            raise ModelNotFoundError(f"The model '{name[:100]}' does not exist", param="model")
        return web.json_response(_model_object(name))

    async def _health(self, request: web.Request) -> web.Response:
        if not self.router.running:
            return web.json_response({"status": "stopped"}, status=503)
        usable = self.router.usable()
        snapshot = self.router.snapshot
        body = {"status": "ok" if usable else "no_miners", "netuid": self.router.config.netuid,
                "block": snapshot.block, "eligible": len(snapshot.pool), "usable": usable}
        return web.json_response(body, status=200 if usable else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.router.running:
            self.router.usable()  # refreshes the ejected-miners gauge
        return web.Response(body=self.router.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    # --- completions ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        key = self._authenticate(request)
        parsed = parse_chat(await self._json(request), self.router.config.netuid,
                            self.config.defaults)
        return await self._answer(request, key, parsed)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        key = self._authenticate(request)
        parsed = parse_completion(await self._json(request), self.router.config.netuid,
                                  self.config.defaults)
        return await self._answer(request, key, parsed)

    async def _answer(self, request: web.Request, key: APIKey | None,
                      parsed: OpenAIRequest) -> web.StreamResponse:
        self._spend(key, parsed.n)
        rid = request[_RID]
        prefix = "chatcmpl" if parsed.kind == "chat" else "cmpl"
        response_id = f"{prefix}-{os.urandom(12).hex()}"
        if parsed.stream:
            return await _Streamer(self, request, parsed, response_id).run()
        completions = await _gather([self._complete(parsed, rid, i) for i in range(parsed.n)])
        choices = [(c.text, c.finish_reason, self._provenance(c)) for c in completions]
        usage = usage_body(completions[0].usage.prompt_tokens,
                           sum(c.usage.completion_tokens for c in completions))
        build = chat_completion if parsed.kind == "chat" else completion_body
        return web.json_response(build(response_id, int(time.time()), parsed.model.name,
                                       choices, usage))

    def _provenance(self, completion: Completion) -> dict[str, Any] | None:
        return completion.provenance.to_dict() if self.config.provenance else None

    def _options(self, parsed: OpenAIRequest, rid: str, index: int) -> dict[str, Any]:
        seed = parsed.seed
        if seed is not None and index:
            seed = (seed + index) % (2**63)  # distinct choices from one seed, reproducibly
        return {"strategy": parsed.model.strategy, "k": parsed.k,
                "max_tokens": parsed.max_tokens, "temperature": parsed.temperature,
                "top_p": parsed.top_p, "seed": seed, "stop": parsed.stop,
                "request_id": rid if parsed.n == 1 else f"{rid}.{index}"}

    async def _complete(self, parsed: OpenAIRequest, rid: str, index: int) -> Completion:
        prompt = parsed.prompt if isinstance(parsed.prompt, str) else list(parsed.prompt)
        return await self.router.complete(prompt, **self._options(parsed, rid, index))

    def _stream(self, parsed: OpenAIRequest, rid: str, index: int) -> RouterStream:
        prompt = parsed.prompt if isinstance(parsed.prompt, str) else list(parsed.prompt)
        return self.router.stream(prompt, **self._options(parsed, rid, index))


class _Streamer:
    """One SSE answer: ``n`` router streams multiplexed into OpenAI chunks."""

    def __init__(self, gateway: Gateway, request: web.Request, parsed: OpenAIRequest,
                 response_id: str) -> None:
        self._gw = gateway
        self._request = request
        self._parsed = parsed
        self._id = response_id
        self._created = int(time.time())
        self._response: web.StreamResponse | None = None
        self._queue: asyncio.Queue[tuple[int, str | Completion | RouterError]] = asyncio.Queue()

    async def run(self) -> web.StreamResponse:
        parsed = self._parsed
        rid = self._request[_RID]
        streams = [self._gw._stream(parsed, rid, i) for i in range(parsed.n)]
        tasks = [asyncio.ensure_future(self._pump(i, s)) for i, s in enumerate(streams)]
        completions: list[Completion] = []
        try:
            while len(completions) < parsed.n:
                index, item = await self._queue.get()
                if isinstance(item, RouterError):
                    if self._response is None:
                        raise item  # nothing sent yet: an ordinary error status
                    await self._send(error_body(item.status, item.message, item.code,
                                                item.param))
                    return self._response
                await self._start()
                if isinstance(item, Completion):
                    completions.append(item)
                    await self._send(self._final_chunk(index, item))
                else:
                    await self._send(self._piece(index, item))
            if parsed.include_usage:
                usage = usage_body(completions[0].usage.prompt_tokens,
                                   sum(c.usage.completion_tokens for c in completions))
                body = self._piece(0, "")
                body["choices"], body["usage"] = [], usage
                await self._send(body)
            assert self._response is not None
            await self._response.write(b"data: [DONE]\n\n")
            await self._response.write_eof()
            return self._response
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stream in streams:
                await stream.aclose()

    async def _pump(self, index: int, stream: RouterStream) -> None:
        try:
            async for piece in stream:
                self._queue.put_nowait((index, piece))
            assert stream.completion is not None
            self._queue.put_nowait((index, stream.completion))
        except RouterError as exc:
            self._queue.put_nowait((index, exc))

    async def _start(self) -> None:
        if self._response is not None:
            return
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "x-request-id": self._request[_RID]})
        await response.prepare(self._request)
        self._response = response
        if self._parsed.kind == "chat":
            for i in range(self._parsed.n):
                await self._send(chat_chunk(self._id, self._created, self._parsed.model.name, i,
                                            {"role": "assistant", "content": ""}, None,
                                            with_usage_field=self._parsed.include_usage))

    def _piece(self, index: int, text: str) -> dict[str, Any]:
        p = self._parsed
        if p.kind == "chat":
            return chat_chunk(self._id, self._created, p.model.name, index, {"content": text},
                              None, with_usage_field=p.include_usage)
        return completion_chunk(self._id, self._created, p.model.name, index, text, None,
                                with_usage_field=p.include_usage)

    def _final_chunk(self, index: int, completion: Completion) -> dict[str, Any]:
        p = self._parsed
        provenance = self._gw._provenance(completion)
        if p.kind == "chat":
            return chat_chunk(self._id, self._created, p.model.name, index, {},
                              completion.finish_reason, provenance=provenance,
                              with_usage_field=p.include_usage)
        return completion_chunk(self._id, self._created, p.model.name, index, "",
                                completion.finish_reason, provenance=provenance,
                                with_usage_field=p.include_usage)

    async def _send(self, body: dict[str, Any]) -> None:
        assert self._response is not None
        data = json.dumps(body, separators=(",", ":"))
        await self._response.write(f"data: {data}\n\n".encode())


def _error_response(exc: RouterError) -> web.Response:
    headers = {}
    if not exc.should_retry:
        headers["x-should-retry"] = "false"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return web.json_response(error_body(exc.status, exc.message, exc.code, exc.param),
                             status=exc.status, headers=headers)


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "ensemblenet"}


async def _gather(jobs: list[Awaitable[Completion]]) -> list[Completion]:
    """Run ``jobs`` concurrently; the first error cancels the rest and is raised."""
    if len(jobs) == 1:
        return [await jobs[0]]
    tasks = [asyncio.ensure_future(j) for j in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
