"""The OpenAI-compatible gateway, driven by the official ``openai`` client (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

openai = pytest.importorskip("openai")

from miners.backends.deterministic import EchoMathBackend  # noqa: E402
from protocol.envelope import Receipt  # noqa: E402
from router.apikeys import APIKey, APIKeyStore, add_key, hash_token, load_store  # noqa: E402
from router.candidates import EligibilityConfig  # noqa: E402
from router.config import RouterConfig  # noqa: E402
from router.deadlines import DeadlineConfig  # noqa: E402
from router.gateway import Gateway, GatewayConfig  # noqa: E402
from router.router import Router  # noqa: E402
from tests.fault_backends import ROUTER_KEY, stall_after_first_token, start_fleet  # noqa: E402

TOKEN = "ens-test-token-alice"
SLOW_TOKEN = "ens-test-token-slow"
KEYS = APIKeyStore([APIKey("alice", hash_token(TOKEN), rate=1000.0, burst=1000.0),
                    APIKey("slow", hash_token(SLOW_TOKEN), rate=0.01, burst=1.0)])


@dataclass
class Served:
    """A gateway on loopback over a router over a dev-chain fleet."""

    gateway: Gateway
    router: Router

    @property
    def base_url(self) -> str:
        """The OpenAI base URL."""
        return self.gateway.url + "/v1"

    def client(self, token: str = TOKEN, **kwargs: object) -> openai.AsyncOpenAI:
        """An async OpenAI client for this gateway (no retries unless asked)."""
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=token,
                                  **{"max_retries": 0, **kwargs})


async def serve(stack: AsyncExitStack, tmp_path: Path, miners: dict[str, object],
                **config: object) -> Served:
    """Start a fleet, a router over it and a gateway with the test keys."""
    fleet = await start_fleet(tmp_path, stack, miners)  # type: ignore[arg-type]
    router = await stack.enter_async_context(Router(
        ledger=fleet.ledger, keypair=ROUTER_KEY,
        config=RouterConfig(seed=3, **config)))  # type: ignore[arg-type]
    gateway = await stack.enter_async_context(Gateway(router, GatewayConfig(port=0),
                                                      api_keys=KEYS))
    return Served(gateway, router)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """A gateway over three exact echo-math miners."""
    async with AsyncExitStack() as stack:
        yield await serve(stack, tmp_path, {n: EchoMathBackend() for n in "abc"})


def check_provenance(extension: object) -> None:
    """The ``ensemble`` field names miners and carries valid receipts signed by them."""
    assert isinstance(extension, dict)
    assert extension["miners"]
    for answer in extension["answers"]:
        receipt = Receipt.from_bytes(base64.b64decode(answer["receipt"]))
        assert receipt.is_valid()
        assert receipt.miner_address == answer["hotkey"]


async def test_chat_completion(served: Served) -> None:
    """A chat completion answers with OpenAI's shape and the provenance extension."""
    async with served.client() as client:
        resp = await client.chat.completions.create(
            model="ensemble/1", messages=[{"role": "user", "content": "12+34="}], max_tokens=8)
    assert resp.object == "chat.completion"
    assert resp.model == "ensemble/1"
    assert resp.choices[0].message.content == "46"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    check_provenance((resp.model_extra or {})["ensemble"])


async def test_chat_stream_with_usage(served: Served) -> None:
    """A streamed chat yields the role, the pieces, the finish reason, usage, then ends."""
    async with served.client() as client:
        stream = await client.chat.completions.create(
            model="ensemble/1:best", messages=[{"role": "user", "content": "12+34="}],
            max_completion_tokens=8, stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "46"
    finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [f.finish_reason for f in finals] == ["stop"]
    check_provenance((finals[0].model_extra or {})["ensemble"])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_sse_ends_with_done(served: Served) -> None:
    """The raw SSE body is ``data:`` events ending with ``data: [DONE]``."""
    body = {"model": "ensemble/1", "prompt": "2+2=", "stream": True, "max_tokens": 4}
    async with aiohttp.ClientSession() as http, http.post(
            served.base_url + "/completions", json=body,
            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]) == "4"


async def test_completions_and_n(served: Served) -> None:
    """Text completions work streamed and not; ``n`` gives that many choices."""
    async with served.client() as client:
        resp = await client.completions.create(model="ensemble/1", prompt="40+2=", max_tokens=8,
                                               n=2, seed=5, temperature=0)
        assert [c.text for c in resp.choices] == ["42", "42"]
        assert [c.index for c in resp.choices] == [0, 1]
        stream = await client.completions.create(model="ensemble/1", prompt="40+2=",
                                                 max_tokens=8, stream=True, top_p=0.9,
                                                 stop=["\n"])
        assert "".join([c.choices[0].text async for c in stream]) == "42"


async def test_ensemble_model_carries_the_vote(served: Served) -> None:
    """The ``:ensemble`` alias votes; the vote and every voter are in the extension."""
    async with served.client() as client:
        resp = await client.chat.completions.create(
            model="ensemble/1:ensemble", messages=[{"role": "user", "content": "7+8="}],
            extra_body={"ensemble": {"k": 3}})
    assert resp.choices[0].message.content == "15"
    extension = (resp.model_extra or {})["ensemble"]
    assert extension["strategy"] == "ensemble"
    assert extension["vote"]["winner"] == "15"
    assert extension["vote"]["agreed"] is True
    check_provenance(extension)


async def test_models_list(served: Served) -> None:
    """GET /v1/models lists the subnet alias and one per strategy."""
    async with served.client() as client:
        ids = [m.id async for m in client.models.list()]
    assert ids == ["ensemble/1", "ensemble/1:best", "ensemble/1:weighted", "ensemble/1:ensemble"]


async def test_errors_have_openai_shape_and_status(served: Served) -> None:
    """A bad key is 401, bad parameters 400, an unknown model 404, a spent key 429."""
    messages = [{"role": "user", "content": "1+1="}]
    async with served.client("ens-wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="ensemble/1", messages=messages)
    assert auth.value.status_code == 401
    assert auth.value.code == "invalid_api_key"
    async with served.client() as client:
        with pytest.raises(openai.BadRequestError) as bad_request:
            await client.chat.completions.create(model="ensemble/1", messages=messages,
                                                 temperature=5)
        assert bad_request.value.param == "temperature"
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="gpt-4o", messages=messages)
        assert missing.value.code == "model_not_found"
    async with served.client(SLOW_TOKEN) as slow:
        await slow.chat.completions.create(model="ensemble/1", messages=messages)
        with pytest.raises(openai.RateLimitError) as limited:
            await slow.chat.completions.create(model="ensemble/1", messages=messages)
    assert limited.value.response.headers["Retry-After"] == "100"


async def test_more_choices_than_the_key_burst_is_400_not_429(served: Served) -> None:
    """``n`` above the key's burst could never be served: 400 naming ``n``, never a 429 that
    clients would retry forever."""
    body = {"model": "ensemble/1", "messages": [{"role": "user", "content": "1+1="}], "n": 2}
    async with aiohttp.ClientSession() as http, http.post(
            served.base_url + "/chat/completions", json=body,
            headers={"Authorization": f"Bearer {SLOW_TOKEN}"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == "n"
    assert "at most 1 at once" in error["message"]


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'"text"', b'{"model": "ensemble/1"}',
    b'{"model": "ensemble/1", "messages": "hi"}',
    b'{"model": "ensemble/1", "messages": [{"role": "tool", "content": "x"}]}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": 5}]}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "x"}], "n": 99}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "x"}], "stop": [1]}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}',
    b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "x"}], "seed": "a"}',
    b'{"model": "ensemble/1", "messages": [{"role": "user", "content": "\\ud800"}]}',
])
async def test_bad_input_is_400_never_500(served: Served, body: bytes) -> None:
    """Malformed bodies get a 400 with OpenAI's error shape and the request id."""
    async with aiohttp.ClientSession() as http, http.post(
            served.base_url + "/chat/completions", data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "x-request-id": "req-test-1"}) as resp:
        assert resp.status == 400
        assert resp.headers["x-request-id"] == "req-test-1"
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_no_miners_is_503_and_not_retried(tmp_path: Path) -> None:
    """With no eligible miner: 503, ``x-should-retry: false``, and the client does not retry."""
    async with AsyncExitStack() as stack:
        served = await serve(stack, tmp_path, {"a": EchoMathBackend()},
                             eligibility=EligibilityConfig(min_incentive=1.0))
        async with served.client(max_retries=3) as client:
            with pytest.raises(openai.InternalServerError) as info:
                await client.chat.completions.create(
                    model="ensemble/1", messages=[{"role": "user", "content": "1+1="}])
        assert info.value.status_code == 503
        assert info.value.response.headers["x-should-retry"] == "false"
        counted = served.router.metrics.http.labels("/v1/chat/completions", "503")._value.get()
        assert counted == 1  # one request: the client obeyed x-should-retry
        async with aiohttp.ClientSession() as http, http.get(served.gateway.url + "/health") as r:
            assert r.status == 503


async def test_mid_stream_failure_is_an_sse_error_event(tmp_path: Path) -> None:
    """A stream that breaks after its first token, with no miner to resume on, ends with an
    SSE error event that the client raises."""
    async with AsyncExitStack() as stack:
        served = await serve(stack, tmp_path, {"stall": stall_after_first_token},
                             deadlines=DeadlineConfig(inter_token_s=0.2))
        async with served.client() as client:
            stream = await client.chat.completions.create(
                model="ensemble/1", messages=[{"role": "user", "content": "12+34="}],
                stream=True)
            seen: list[str | None] = []

            async def drain() -> None:
                async for chunk in stream:
                    seen.append(chunk.choices[0].delta.content)

            with pytest.raises(openai.APIError, match="broke off"):
                await drain()
    assert "4" in seen


async def test_health_metrics_and_request_id(served: Served) -> None:
    """/health and /metrics answer without a key; every answer echoes a sane x-request-id."""
    async with served.client() as client:
        await client.chat.completions.create(
            model="ensemble/1", messages=[{"role": "user", "content": "1+1="}])
    async with aiohttp.ClientSession() as http:
        async with http.get(served.gateway.url + "/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["usable"] == 3
            assert resp.headers["x-request-id"].startswith("req_")
        async with http.get(served.gateway.url + "/metrics") as resp:
            text = await resp.text()
    assert 'ensemble_router_requests_total{outcome="ok",strategy="best"} 1.0' in text
    assert "ensemble_gateway_http_requests_total" in text


def test_api_keys_file_round_trip(tmp_path: Path) -> None:
    """add_key stores only the token's hash (file 0600); the store then accepts the token."""
    path = tmp_path / "keys.json"
    token = add_key(path, "bob", rate=2.0, burst=3.0)
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    store = load_store(path)
    assert store.authenticate(f"Bearer {token}").id == "bob"
    assert json.loads(path.read_text())["keys"][0] == {
        "id": "bob", "sha256": hash_token(token), "rate": 2.0, "burst": 3.0}


# --- the sync client, against a gateway on a background thread's loop --------------------------


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[str]:
    """A fleet, router and gateway running on their own event loop in a thread; yields the
    base URL and stops them after the test."""
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        state["stop"], state["loop"] = stop, asyncio.get_running_loop()
        try:
            async with AsyncExitStack() as stack:
                served = await serve(stack, tmp_path, {n: EchoMathBackend() for n in "ab"})
                state["url"] = served.base_url
                ready.set()
                await stop.wait()
        finally:
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    assert "url" in state
    try:
        yield str(state["url"])
    finally:
        loop = state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join(30)


def test_sync_client(threaded: str) -> None:
    """The synchronous client works too, streamed and not."""
    with openai.OpenAI(base_url=threaded, api_key=TOKEN, max_retries=0) as client:
        resp = client.chat.completions.create(
            model="ensemble/1", messages=[{"role": "user", "content": "20+3="}])
        assert resp.choices[0].message.content == "23"
        stream = client.chat.completions.create(
            model="ensemble/1", messages=[{"role": "user", "content": "20+3="}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "23"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=threaded, api_key="nope", max_retries=0).models.list()
