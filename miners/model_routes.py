"""The model-serving routes (``generate``, ``generate_stream``, ``info``) over any backend.

The handlers are thin: they pass the request and the server's cancellation event to the
backend (see :mod:`miners.backends` for what backends guarantee) and wrap its pieces in the
wire messages of :mod:`protocol.messages`. All three are async and never block the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from miners.backends import Backend
from miners.server import CallContext, MinerServer
from protocol.messages import (
    ROUTE_GENERATE,
    ROUTE_GENERATE_STREAM,
    ROUTE_INFO,
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    InfoRequest,
    InfoResponse,
)


class ModelRoutes:
    """Route handlers bound to one backend."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def generate(self, ctx: CallContext, request: GenerateRequest) -> GenerateResponse:
        """The finished completion; ``finish_reason`` is ``cancelled`` if the deadline hit."""
        return await self._backend.generate(request, ctx.cancelled)

    async def generate_stream(self, ctx: CallContext,
                              request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        """Chunks as tokens are decoded; the last one has the finish reason and token counts.

        Texts of all chunks concatenate to what ``generate`` returns for the same request.
        """
        index = 0
        async for delta in self._backend.stream(request, ctx.cancelled):
            final = delta.final
            if final is None:
                yield GenerateChunk(index=index, text=delta.text)
            else:
                yield GenerateChunk(index=index, text=delta.text,
                                    finish_reason=final.finish_reason,
                                    prompt_tokens=final.prompt_tokens,
                                    completion_tokens=final.completion_tokens)
            index += 1

    async def info(self, ctx: CallContext, request: InfoRequest) -> InfoResponse:
        """What the backend serves."""
        return self._backend.info()


def add_model_routes(server: MinerServer, backend: Backend) -> None:
    """Register ``generate``, ``generate_stream`` and ``info`` on ``server``."""
    routes = ModelRoutes(backend)
    server.add_route(ROUTE_GENERATE, GenerateRequest, GenerateResponse, routes.generate)
    server.add_route(ROUTE_GENERATE_STREAM, GenerateRequest, GenerateChunk,
                     routes.generate_stream, kind="stream")
    server.add_route(ROUTE_INFO, InfoRequest, InfoResponse, routes.info)
