"""The transformers backend on the real tiny addition model, directly and behind a real miner."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests must never reach for the network

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from miners.backends.transformers_backend import (  # noqa: E402 - after the importorskip guards
    TransformersBackend,
    TransformersConfig,
)
from miners.model_routes import ModelRoutes, add_model_routes  # noqa: E402
from miners.server import CallContext, MinerServer  # noqa: E402
from protocol.client import Client, Target, Timeouts  # noqa: E402
from protocol.clock import SystemClock  # noqa: E402
from protocol.errors import (  # noqa: E402
    ConfigError,
    MalformedError,
    PayloadTooLargeError,
    RemoteError,
)
from protocol.keys import Keypair  # noqa: E402
from protocol.messages import (  # noqa: E402
    ChatMessage,
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    InfoRequest,
    InfoResponse,
)

MODEL_DIR = Path(__file__).parents[1] / "models" / "tiny-add-q99"
MINER_SEED = bytes([7] * 32)
CALLER_SEED = bytes([9] * 32)
#: Held-out problems (never trained on) that tiny-add-q99 answers correctly, of mixed lengths.
HELD_OUT_CORRECT = {"32+97=": "129", "78+92=": "170", "15+81=": "96", "5+22=": "27"}
NEVER = threading.Event()


class CancelAfter(threading.Event):
    """A cancellation event that reads as set from its ``checks``-th look on (a fake clock)."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._left = checks

    def is_set(self) -> bool:
        self._left -= 1
        return self._left < 0 or super().is_set()


class Gate(threading.Event):
    """A cancellation event whose first look blocks until ``release`` (holds the worker busy)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.opened = threading.Event()

    def is_set(self) -> bool:
        self.entered.set()
        self.opened.wait(timeout=30)
        return super().is_set()


@pytest.fixture(scope="module")
def backend() -> Iterator[TransformersBackend]:
    """The q99 model, loaded once for the module (a few hundred ms)."""
    b = TransformersBackend.load(TransformersConfig(model_dir=str(MODEL_DIR),
                                                    capabilities=("math",), threads=1))
    yield b
    asyncio.run(b.aclose())


def greedy(prompt: str, **kwargs: object) -> GenerateRequest:
    return GenerateRequest(prompt=prompt, **kwargs)  # type: ignore[arg-type]


async def test_info_describes_the_model(backend: TransformersBackend) -> None:
    """info reports the directory name, the context length and the configured capabilities."""
    assert backend.info() == InfoResponse(model="tiny-add-q99", context_length=64,
                                          capabilities=["math"], max_tokens=256, chat=False)


@pytest.mark.parametrize(("prompt", "answer"), sorted(HELD_OUT_CORRECT.items()))
async def test_greedy_answers_held_out_problems(backend: TransformersBackend, prompt: str,
                                                answer: str) -> None:
    """The q99 model answers held-out problems exactly and stops at end-of-sequence."""
    response = await backend.generate(greedy(prompt), NEVER)
    assert response == GenerateResponse(text=answer, prompt_tokens=len(prompt) + 1,
                                        completion_tokens=len(answer) + 1,
                                        finish_reason="stop", model="tiny-add-q99")


async def test_batched_equals_one_at_a_time(backend: TransformersBackend) -> None:
    """8 mixed greedy prompts decoded together give exactly the unbatched texts."""
    prompts = [*HELD_OUT_CORRECT, "1+1=", "hello world", "what is 3*4?", "99+99="]
    requests = [greedy(p, max_tokens=12) for p in prompts]
    alone = [await backend.generate(r, NEVER) for r in requests]
    passes_before = backend.forward_passes
    together = await asyncio.gather(*(backend.generate(r, NEVER) for r in requests))
    assert together == alone
    longest = max(r.completion_tokens for r in alone)
    assert backend.forward_passes - passes_before == longest  # one batch: prefill + steps


async def test_prompt_too_long_is_refused(backend: TransformersBackend,
                                          capfd: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A prompt that leaves no room in the 64-token context is a 413, without the tokenizer's
    warning about long sequences in the log (the refusal says it all)."""
    with pytest.raises(PayloadTooLargeError):
        await backend.generate(greedy("1" * 100), NEVER)
    with pytest.raises(PayloadTooLargeError):
        await backend.generate(greedy("1" * 63), NEVER)
    assert "longer than the specified maximum" not in capfd.readouterr().err + caplog.text


async def test_max_tokens_gives_length(backend: TransformersBackend) -> None:
    """Running out of max_tokens ends with ``length`` and the text so far."""
    response = await backend.generate(greedy("32+97=", max_tokens=2), NEVER)
    assert (response.text, response.finish_reason, response.completion_tokens) == (
        "12", "length", 2)


async def test_stop_string_cuts_before_it(backend: TransformersBackend) -> None:
    """The text ends before the first stop string; streamed pieces never contain it."""
    request = greedy("32+97=", stop=["29"])
    response = await backend.generate(request, NEVER)
    assert (response.text, response.finish_reason) == ("1", "stop")
    pieces = [d.text async for d in backend.stream(request, NEVER)]
    assert "".join(pieces) == "1"


async def test_cancelled_before_start(backend: TransformersBackend) -> None:
    """A request whose event is already set does no decoding and says ``cancelled``."""
    cancelled = threading.Event()
    cancelled.set()
    response = await backend.generate(greedy("32+97="), cancelled)
    assert (response.text, response.finish_reason, response.completion_tokens) == (
        "", "cancelled", 0)


async def test_cancelled_mid_decoding(backend: TransformersBackend) -> None:
    """Cancellation seen after the first token stops that request with the text so far."""
    # Looks: one before the prefill, one per decoded token; the third look says "cancelled".
    response = await backend.generate(greedy("32+97="), CancelAfter(2))
    assert (response.text, response.finish_reason, response.completion_tokens) == (
        "1", "cancelled", 1)


async def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    """Same seed, same text, whether alone or sharing a batch; the seed matters."""
    def sampled(seed: int) -> GenerateRequest:
        # The model is unsure what follows "hello=", so samples differ between seeds.
        return greedy("hello=", temperature=2.0, top_p=0.99, seed=seed, max_tokens=20)

    alone = await backend.generate(sampled(1), NEVER)
    batch = await asyncio.gather(backend.generate(sampled(1), NEVER),
                                 backend.generate(greedy("32+97="), NEVER),
                                 backend.generate(sampled(2), NEVER))
    assert batch[0] == alone
    assert batch[1].text == "129"
    others = {(await backend.generate(sampled(s), NEVER)).text for s in range(2, 6)}
    assert len(others | {alone.text}) > 1


async def test_a_tiny_temperature_samples_like_greedy_and_harms_no_batchmate(
        backend: TransformersBackend) -> None:
    """Temperatures down to the smallest float decode as greedy would, and never fail the other
    requests sharing their batch (logits / 1e-38 used to overflow to NaN)."""
    batch = await asyncio.gather(*(
        backend.generate(greedy("32+97=", temperature=t, seed=1), NEVER)
        for t in (1e-38, 5e-324, 1e-6)), backend.generate(greedy("12+34="), NEVER))
    assert [r.text for r in batch] == ["129", "129", "129", "46"]


async def test_top_p_zero_keeps_only_the_top_token(backend: TransformersBackend) -> None:
    """Nucleus sampling always keeps the most likely token, so top_p=0 decodes greedily."""
    response = await backend.generate(greedy("32+97=", temperature=2.0, top_p=0.0, seed=3),
                                      NEVER)
    assert response.text == "129"


async def test_chat_messages_join_with_newlines(backend: TransformersBackend) -> None:
    """Without a chat template, messages' contents are joined by newlines into the prompt."""
    chat = GenerateRequest(messages=[ChatMessage("user", "32+97=")])
    assert await backend.generate(chat, NEVER) == await backend.generate(greedy("32+97="), NEVER)
    two = GenerateRequest(messages=[ChatMessage("system", "add"), ChatMessage("user", "5+22=")],
                          max_tokens=4)
    assert (await backend.generate(two, NEVER)).prompt_tokens == len("add\n5+22=") + 1


async def test_chat_template_is_applied(tmp_path: Path) -> None:
    """With a chat template, messages are rendered by it (and info says chat)."""
    pytest.importorskip("jinja2")
    from transformers import AutoTokenizer  # noqa: PLC0415 - only this test edits a tokenizer

    for name in ("config.json", "model.safetensors"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(tmp_path)
    async with TransformersBackend.load(TransformersConfig(model_dir=str(tmp_path))) as chat:
        assert chat.info().chat
        request = GenerateRequest(messages=[ChatMessage("system", "32"),
                                            ChatMessage("user", "+97=")])
        response = await chat.generate(request, NEVER)
    assert (response.text, response.prompt_tokens) == ("129", 7)


def _model_copy(tmp_path: Path) -> Path:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    return tmp_path


async def test_a_chat_template_refusal_is_a_400_that_quotes_it(tmp_path: Path) -> None:
    """A template's raise_exception (roles that do not alternate, say) is the caller's to fix."""
    pytest.importorskip("jinja2")
    config_path = _model_copy(tmp_path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = ("{% if messages[0]['role'] != 'user' %}"
                               "{{ raise_exception('Conversation must start with a user') }}"
                               "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    config_path.write_text(json.dumps(config))
    async with TransformersBackend.load(TransformersConfig(model_dir=str(tmp_path))) as chat:
        with pytest.raises(MalformedError, match="must start with a user") as info:
            await chat.generate(GenerateRequest(messages=[ChatMessage("system", "x")]), NEVER)
        assert (info.value.status, info.value.code) == (400, "bad_messages")
        ok = await chat.generate(GenerateRequest(messages=[ChatMessage("user", "1+1=")],
                                                 max_tokens=2), NEVER)
    assert ok.prompt_tokens > 0


async def test_an_empty_prompt_is_a_400_not_a_context_error(tmp_path: Path) -> None:
    """Without a BOS token an empty prompt has no tokens at all: the caller is told so."""
    tokenizer_path = _model_copy(tmp_path) / "tokenizer.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    tokenizer["post_processor"] = None  # no BOS added
    tokenizer_path.write_text(json.dumps(tokenizer))
    async with TransformersBackend.load(TransformersConfig(model_dir=str(tmp_path))) as bare:
        with pytest.raises(MalformedError, match="empty") as info:
            await bare.generate(greedy(""), NEVER)
    assert info.value.code == "empty_prompt"


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "use --device cpu"), ("cuda:7", "--device cuda:7"), ("warp-drive", "not a torch"),
])
def test_an_unusable_device_is_a_config_error(device: str, message: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    with pytest.raises(ConfigError, match=message):
        TransformersBackend.load(TransformersConfig(model_dir=str(MODEL_DIR), device=device))


async def test_routes_pass_the_deadline_event(backend: TransformersBackend) -> None:
    """The generate route hands ctx.cancelled to the backend."""
    cancelled = threading.Event()
    cancelled.set()
    ctx = CallContext("caller", 1, 0, b"\0" * 32, 0.0, cancelled)
    response = await ModelRoutes(backend).generate(ctx, greedy("32+97="))
    assert response.finish_reason == "cancelled"


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """Loading something that is not a model directory fails with ConfigError."""
    with pytest.raises(ConfigError):
        TransformersBackend.load(TransformersConfig(model_dir=str(tmp_path)))


@pytest.fixture
async def miner(backend: TransformersBackend) -> AsyncIterator[tuple[Client, Target]]:
    """A real miner on 127.0.0.1 serving the backend, and a client to call it."""
    async with MinerServer(Keypair(MINER_SEED)) as server:
        add_model_routes(server, backend)
        async with Client(Keypair(CALLER_SEED)) as client:
            yield client, Target(server.address, server.url)


async def test_stream_through_a_real_miner(miner: tuple[Client, Target],
                                           backend: TransformersBackend) -> None:
    """Streamed chunks are real tokens, concatenate to the unary text, and the receipt verifies."""
    client, target = miner
    request = greedy("32+97=")
    call = client.stream(target, "generate_stream", request, GenerateChunk)
    chunks = [chunk async for chunk in call]
    assert [c.text for c in chunks] == ["1", "2", "9", ""]
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert (chunks[-1].finish_reason, chunks[-1].prompt_tokens,
            chunks[-1].completion_tokens) == ("stop", 7, 4)
    assert call.receipt is not None
    unary = await client.query(target, "generate", request, GenerateResponse)
    assert unary.response is not None
    assert unary.receipt is not None
    assert unary.response.text == "".join(c.text for c in chunks)
    info = await client.query(target, "info", InfoRequest(), InfoResponse)
    assert info.response == backend.info()


class LaggingClock(SystemClock):
    """The caller's wall clock runs behind, so the miner's deadline passes before the client's."""

    def __init__(self, lag_ms: int) -> None:
        self._lag_ms = lag_ms

    def now_ms(self) -> int:
        return super().now_ms() - self._lag_ms


async def test_deadline_while_queued_is_a_504(backend: TransformersBackend) -> None:
    """A request whose deadline passes while the model is busy gets a 504 and is abandoned."""
    gate = Gate()
    busy = asyncio.ensure_future(backend.generate(greedy("5+22="), gate))
    await asyncio.to_thread(gate.entered.wait, 30)  # the worker is now inside that batch
    cancelled_before = backend.finished["cancelled"]
    # The miner sees a deadline 0.5 s away; the client would wait 1 s: the 504 arrives first.
    async with MinerServer(Keypair(MINER_SEED)) as server:
        add_model_routes(server, backend)
        async with Client(Keypair(CALLER_SEED), clock=LaggingClock(500)) as client:
            result = await client.query(Target(server.address, server.url), "generate",
                                        greedy("32+97="), GenerateResponse,
                                        timeouts=Timeouts(total=1.0))
    gate.opened.set()
    assert isinstance(result.error, RemoteError)
    assert result.error.status == 504
    assert (await busy).text == "27"
    # The abandoned request is queued ahead of this one, so it has been dropped by now.
    assert (await backend.generate(greedy("32+97="), NEVER)).text == "129"
    assert backend.finished["cancelled"] == cancelled_before + 1


@pytest.mark.parametrize("bars", [False, True])
def test_loading_progress_bars_only_when_asked(capfd: pytest.CaptureFixture[str],
                                               bars: bool) -> None:
    """transformers' 'Loading weights' bar reaches stderr only with ``progress_bars``: miners
    writing log files or JSON logs stay free of it."""
    backend = TransformersBackend.load(TransformersConfig(model_dir=str(MODEL_DIR),
                                                          progress_bars=bars))
    asyncio.run(backend.aclose())
    assert ("Loading weights" in capfd.readouterr().err) is bars
