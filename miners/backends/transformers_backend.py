"""A Hugging Face causal language model behind the backend contract, with dynamic batching.

One worker thread owns the model. Requests are queued by the event loop; the worker takes the
first waiting request and keeps collecting for up to ``batch_window_ms`` (stopping early at
``max_batch``, or once no request arrived for ``batch_gap_ms``), then decodes the whole batch
together: one left-padded prefill, then ONE forward pass per step for every live request,
reusing the KV cache. Requests that finish (end-of-sequence, stop string,
``max_tokens``, cancellation, or an abandoned stream) leave the batch at once: their rows are
dropped from the cache, so the remaining steps cost less. Requests arriving meanwhile wait for
the next batch. torch releases the GIL inside its kernels, so the event loop stays responsive;
pieces and results go back to it only through ``loop.call_soon_threadsafe``.

Sampling is per request: greedy when ``temperature == 0``, otherwise temperature and nucleus
(``top_p``) sampling from a ``torch.Generator`` seeded with ``request.seed`` (or, without a
seed, from the backend's own seeded generator), so a seeded request gives the same text every
time on the same miner whatever else shares its batch.

The model is loaded from a local directory only (``local_files_only=True``); nothing is
downloaded. Entry points should also set ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from miners.backends import Delta, prompt_text
from miners.backends.stopping import Assembler
from protocol.errors import ConfigError, HandlerError, MalformedError, PayloadTooLargeError
from protocol.messages import FinishReason, GenerateRequest, GenerateResponse, InfoResponse

log = logging.getLogger("ensemble.miner.transformers")

#: Small models on CPU gain up to ~8x from batching; beyond ~16 rows a CPU step stops being
#: dominated by per-step overhead, so larger batches add latency for little throughput.
DEFAULT_MAX_BATCH = 16
#: Long enough to catch requests that arrive together (a validator's fan-out lands within a
#: few ms), short enough to be invisible next to a generation.
DEFAULT_BATCH_WINDOW_MS = 5.0
#: Requests sent together arrive well within 1 ms of each other; once none has come for this
#: long the batch starts without waiting out the window (for a tiny model the full 5 ms
#: window was a third of a batch's time).
DEFAULT_BATCH_GAP_MS = 1.0
#: A miner-side cap on completion length, advertised in ``info`` as ``max_tokens``.
DEFAULT_MAX_NEW_TOKENS = 256
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True)
class TransformersConfig:
    """How to load and serve one model directory."""

    model_dir: str
    device: str = "cpu"
    max_batch: int = DEFAULT_MAX_BATCH
    batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS
    #: The batch also starts once no new request arrived for this long.
    batch_gap_ms: float = DEFAULT_BATCH_GAP_MS
    max_new_tokens_limit: int = DEFAULT_MAX_NEW_TOKENS
    #: Capability tags reported by ``info`` (e.g. ``("math",)``).
    capabilities: tuple[str, ...] = ()
    #: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (the dtype stored in the directory).
    dtype: str = "float32"
    #: Seeds the generator that seeds requests sent without a ``seed``.
    seed: int = 0
    #: The name reported by ``info``; the directory's name when empty.
    model_name: str = ""
    #: torch intra-op threads, set process-wide by :meth:`TransformersBackend.load`; 0 leaves
    #: torch's setting. Small models want 1: extra threads only spin against other processes.
    threads: int = 0
    #: Show transformers' "Loading weights" progress bars. They are process-wide in
    #: transformers, and written to stderr: only for a person at a terminal, never in log files
    #: or JSON logs (where they would break one-object-per-line).
    progress_bars: bool = False


class _Closed(Exception):
    """The backend is closing; requests still queued finish as cancelled."""


@dataclass(eq=False, slots=True)
class _Job:
    """One request as the worker sees it; only the worker thread mutates it after submit."""

    request: GenerateRequest
    cancelled: threading.Event
    loop: asyncio.AbstractEventLoop
    inbox: asyncio.Queue[Delta | BaseException]
    want_pieces: bool
    seed: int
    abandoned: threading.Event = field(default_factory=threading.Event)
    prompt_ids: list[int] = field(default_factory=list)
    max_new: int = 0
    ids: list[int] = field(default_factory=list)
    out: Assembler | None = None
    generator: torch.Generator | None = None

    def stopping(self) -> bool:
        """Whether decoding must stop for this request (deadline passed or consumer gone)."""
        return self.cancelled.is_set() or self.abandoned.is_set()


class TransformersBackend:
    """Serves one causal LM with dynamic batching. Build it with :meth:`load`.

    The constructor takes an already loaded model and tokenizer and does no I/O; the worker
    thread starts with the first request. Use ``async with`` or call :meth:`aclose`.
    """

    def __init__(self, config: TransformersConfig, model: Any,
                 tokenizer: PreTrainedTokenizerBase) -> None:
        self.config = config
        self._model = model
        self._tok = tokenizer
        self._device = torch.device(config.device)
        self._pad_id = _pad_id(tokenizer, model)
        self._eos_ids = _eos_ids(tokenizer, model)
        self._context = _context_length(model, tokenizer)
        self._cache_kwarg = _cache_kwarg(model)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._seeds = np.random.default_rng(config.seed)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Event()
        self._outbox: list[tuple[_Job, Delta | BaseException]] = []  # worker thread only
        self._name = config.model_name or Path(os.path.abspath(config.model_dir)).name
        #: How many forward passes the worker ran, and over how many rows in total (tests and
        #: benchmarks read these to see batching happen).
        self.forward_passes = 0
        self.forward_rows = 0
        #: Finished requests by finish reason (written by the worker thread only).
        self.finished: Counter[str] = Counter()

    @classmethod
    def load(cls, config: TransformersConfig) -> TransformersBackend:
        """Load ``config.model_dir`` from local files only and return the backend.

        Raises:
            ConfigError: the directory is missing, not a model, or the dtype/device is unknown.
        """
        path = Path(config.model_dir)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a model directory (no config.json)")
        if config.dtype != "auto" and config.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be auto or one of {sorted(_DTYPES)}")
        if (config.max_batch < 1 or config.max_new_tokens_limit < 1
                or config.batch_window_ms < 0 or config.batch_gap_ms < 0):
            raise ConfigError("max_batch and max_new_tokens_limit must be >= 1, "
                              "batch_window_ms and batch_gap_ms >= 0")
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        if config.progress_bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        device = _device(config.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True,
                dtype=_DTYPES.get(config.dtype, "auto"))
            model.to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the model in {path}: {exc}") from exc
        model.eval()
        return cls(config, model, tokenizer)

    async def __aenter__(self) -> TransformersBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the backend contract ---------------------------------------------------------------

    def info(self) -> InfoResponse:
        """Describe the model: name, context, capabilities, completion cap, chat template."""
        return InfoResponse(model=self._name, context_length=self._context,
                            capabilities=list(self.config.capabilities),
                            max_tokens=self.config.max_new_tokens_limit,
                            chat=bool(getattr(self._tok, "chat_template", None)))

    async def generate(self, request: GenerateRequest,
                       cancelled: threading.Event) -> GenerateResponse:
        """Return the finished completion (see :mod:`miners.backends` for the contract)."""
        async for delta in self._run(request, cancelled, want_pieces=False):
            if delta.final is not None:
                return delta.final
        raise HandlerError("generation ended without a result")

    def stream(self, request: GenerateRequest,
               cancelled: threading.Event) -> AsyncIterator[Delta]:
        """Yield pieces as tokens are decoded; the last delta carries the final response."""
        return self._run(request, cancelled, want_pieces=True)

    async def aclose(self) -> None:
        """Stop the worker; queued and running requests finish as cancelled."""
        self._closing.set()
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(thread.join)

    # --- event-loop side --------------------------------------------------------------------

    async def _run(self, request: GenerateRequest, cancelled: threading.Event, *,
                   want_pieces: bool) -> AsyncIterator[Delta]:
        job = _Job(request, cancelled, asyncio.get_running_loop(), asyncio.Queue(), want_pieces,
                   seed=request.seed if request.seed is not None else self._next_seed())
        self._submit(job)
        try:
            while True:
                item = await job.inbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.final is not None:
                    return
        finally:
            job.abandoned.set()  # a no-op when finished; stops decoding when the consumer left

    def _next_seed(self) -> int:
        with self._lock:
            return int(self._seeds.integers(0, 2**63 - 1))

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise HandlerError("the backend is shut down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._worker, name="transformers-batch",
                                                daemon=True)
                self._thread.start()
            self._queue.put(job)

    # --- worker side ------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            try:
                batch = self._collect()
            except _Closed:
                self._drain_cancelled()
                return
            try:
                with torch.inference_mode():
                    self._decode(batch)
            except Exception as exc:
                log.exception("batch of %d failed", len(batch))
                error = HandlerError("generation failed")
                error.__cause__ = exc
                for job in batch:
                    self._post(job, error)
            self._flush()

    def _collect(self) -> list[_Job]:
        """Block for the first request, then gather more until the batch is full, the window
        has closed, or arrivals paused for the gap."""
        first = self._queue.get()
        if first is None:
            raise _Closed
        batch = [first]
        deadline = time.monotonic() + self.config.batch_window_ms / 1000
        gap = self.config.batch_gap_ms / 1000
        while len(batch) < self.config.max_batch:
            remaining = min(deadline - time.monotonic(), gap)
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else (
                    self._queue.get_nowait())
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close after this batch
                break
            batch.append(job)
        return batch

    def _drain_cancelled(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._finish(job, "cancelled")
                self._flush()

    def _prepare(self, job: _Job) -> bool:
        """Tokenize the prompt and set the length budget; return False (the job's consumer
        gets the error) when the request cannot be served."""
        request = job.request
        job.out = Assembler(request.stop)
        try:
            job.prompt_ids = self._encode(request)
        except _TEMPLATE_ERRORS as exc:
            # The model's own chat template refused these messages (roles that do not
            # alternate, say): the caller can fix that, so it is a 400 with the template's words.
            self._post(job, MalformedError(f"the model's chat template refused the messages: "
                                           f"{exc}", code="bad_messages"))
            return False
        except Exception:  # a tokenizer failure is this request's alone
            log.exception("cannot tokenize a request")
            self._post(job, HandlerError("the prompt could not be tokenized"))
            return False
        if not job.prompt_ids:  # an empty prompt on a tokenizer that adds no BOS token
            self._post(job, MalformedError("the prompt is empty; send some text",
                                           code="empty_prompt"))
            return False
        room = self._context - len(job.prompt_ids)
        if room < 1:
            self._post(job, PayloadTooLargeError(
                f"prompt of {len(job.prompt_ids)} tokens leaves no room in the "
                f"{self._context}-token context", code="context_length_exceeded"))
            return False
        job.max_new = min(request.max_tokens, self.config.max_new_tokens_limit, room)
        if request.temperature > 0:
            job.generator = torch.Generator().manual_seed(job.seed)
        return True

    def _encode(self, request: GenerateRequest) -> list[int]:
        """Prompt token ids: the chat template when the tokenizer has one, else plain text."""
        if request.messages is not None and getattr(self._tok, "chat_template", None):
            chat = [{"role": m.role, "content": m.content} for m in request.messages]
            text = self._tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            # The template already wrote any BOS token; adding special tokens would double it.
            return list(self._tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        # verbose=False: a prompt longer than the context is refused right after (413), so the
        # tokenizer's warning about it would only be noise in the miner's log.
        return list(self._tok(prompt_text(request), verbose=False)["input_ids"])

    def _decode(self, batch: list[_Job]) -> None:
        """Prefill the batch, then step all live rows together until each one finishes."""
        live = [job for job in batch if self._prepare(job)]
        live = [job for job in live if not self._finish_if_stopping(job)]
        if not live:
            return
        ids, mask = self._left_pad([job.prompt_ids for job in live])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, mask, positions, cache=None)
        cache = _returned_cache(out)
        next_pos = positions[:, -1:] + 1
        while True:
            tokens = self._choose(live, out.logits[:, -1, :])
            keep = [i for i, (job, tok) in enumerate(zip(live, tokens, strict=True))
                    if not self._advance(job, tok)]
            self._flush()
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self._device)
                cache.batch_select_indices(index)
                mask, next_pos = mask[index], next_pos[index]
                live = [live[i] for i in keep]
            step_ids = torch.tensor([[tokens[i]] for i in keep], device=self._device)
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            out = self._forward(step_ids, mask, next_pos, cache=cache)
            next_pos = next_pos + 1

    def _post(self, job: _Job, item: Delta | BaseException) -> None:
        """Queue ``item`` for ``job``'s consumer; :meth:`_flush` sends it."""
        self._outbox.append((job, item))

    def _flush(self) -> None:
        """Hand queued items to their event loops: one wake-up per loop per step.

        Each ``call_soon_threadsafe`` writes to the loop's wake-up socket and hands the GIL to
        the loop thread; doing it once per step rather than once per request keeps the worker
        from stalling behind the loop (measured: a third of a batch's time at 8 requests).
        """
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Delta | BaseException]]] = {}
        for job, item in self._outbox:
            by_loop.setdefault(job.loop, []).append((job, item))
        self._outbox.clear()
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                for job, _ in items:
                    job.abandoned.set()

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        return ids.to(self._device), mask.to(self._device)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: Any) -> Any:
        self.forward_passes += 1
        self.forward_rows += ids.shape[0]
        return self._model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=True, **{self._cache_kwarg: cache})

    def _choose(self, live: list[_Job], logits: torch.Tensor) -> list[int]:
        """Next token per row: one batched argmax, then per-request sampling where asked."""
        tokens: list[int] = logits.argmax(dim=-1).tolist()
        for i, job in enumerate(live):
            if job.generator is not None:
                tokens[i] = _sample(logits[i], job.request.temperature, job.request.top_p,
                                    job.generator)
        return tokens

    def _advance(self, job: _Job, token: int) -> bool:
        """Apply one decoded token to ``job``; return True when the job has finished."""
        if self._finish_if_stopping(job):
            return True
        assert job.out is not None
        job.ids.append(token)
        if token in self._eos_ids:
            self._finish(job, "stop")
            return True
        if job.want_pieces or job.request.stop:  # otherwise the text is decoded once, at the end
            piece = job.out.feed(self._text(job.ids))
            if piece and job.want_pieces:
                self._post(job, Delta(piece))
            if job.out.stopped:
                self._finish(job, "stop")
                return True
        if len(job.ids) >= job.max_new:
            self._finish(job, "length")
            return True
        return False

    def _text(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def _finish_if_stopping(self, job: _Job) -> bool:
        if job.stopping() or self._closing.is_set():
            self._finish(job, "cancelled")
            return True
        return False

    def _finish(self, job: _Job, reason: FinishReason) -> None:
        self.finished[reason] += 1
        out = job.out or Assembler(job.request.stop)
        last = "" if out.stopped else out.close(
            self._text([t for t in job.ids if t not in self._eos_ids]))
        self._post(job, Delta(last, GenerateResponse(
            text=out.text, prompt_tokens=len(job.prompt_ids), completion_tokens=len(job.ids),
            finish_reason=reason, model=self._name)))


def _put_all(items: list[tuple[_Job, Delta | BaseException]]) -> None:
    """Runs on the consumers' event loop: put each item into its job's inbox."""
    for job, item in items:
        job.inbox.put_nowait(item)


def _sample(logits: torch.Tensor, temperature: float, top_p: float,
            generator: torch.Generator) -> int:
    """Draw one token id with temperature and nucleus filtering (on CPU, for reproducibility)."""
    # Shifted so the largest logit is 0 first: any temperature the wire allows (down to the
    # smallest float) then gives finite scores, where 1e-38 would overflow to inf and NaN, and
    # fail every request of the batch.
    scores = logits.double().cpu()
    probs = torch.softmax((scores - scores.max()) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        outside = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        outside[0] = False
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _pad_id(tokenizer: PreTrainedTokenizerBase, model: Any) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None),
                      tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0  # any id works: padded positions are masked out


def _eos_ids(tokenizer: PreTrainedTokenizerBase, model: Any) -> frozenset[int]:
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    for source in (tokenizer.eos_token_id, getattr(generation, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    return frozenset(ids)


def _cache_kwarg(model: Any) -> str:
    """The forward argument that takes the KV cache: ``cache`` since transformers 5.2x, before
    that ``past_key_values`` (the old name now warns, and warnings are errors in tests)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _device(name: str) -> torch.device:
    """``torch.device(name)``, refusing a device this torch build or machine cannot use.

    Raises:
        ConfigError: the name is not a device, or names a CUDA or MPS device that is absent.
    """
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "has no CUDA support" if torch.version.cuda is None else "sees no CUDA GPU"
        raise ConfigError(f"--device {name}: this torch {torch.__version__} {build}; "
                          "use --device cpu, or install a CUDA build of torch on a GPU machine")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    return device


def _template_errors() -> tuple[type[Exception], ...]:
    try:
        from jinja2.exceptions import TemplateError  # noqa: PLC0415 - optional, via transformers
    except ImportError:
        return ()
    return (TemplateError,)


#: What a chat template raises when it refuses messages (``raise_exception`` in templates).
_TEMPLATE_ERRORS = _template_errors()


def _context_length(model: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    for value in (getattr(model.config, "max_position_embeddings", None),
                  getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    raise ConfigError("the model does not declare its context length")
