"""The graded tiny addition models measure up to their grades on held-out problems."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests must never reach for the network

pytest.importorskip("torch")
pytest.importorskip("transformers")

from miners.backends.transformers_backend import (
    TransformersBackend,
    TransformersConfig,
)
from miners.models import addition
from protocol.messages import GenerateRequest

MODELS = Path(__file__).parents[1] / "models"
GRADES = {"tiny-add-q10": 10, "tiny-add-q60": 60, "tiny-add-q90": 90, "tiny-add-q99": 99}
#: Points a model may miss its grade by.
TOLERANCE = 10
#: Points the serving backend (left padding, KV cache) may differ from the training-time
#: evaluation (no padding, no cache) on the same problems: a borderline answer or two.
AGREEMENT = 1.0


async def exact_match(model_dir: Path) -> float:
    """Greedy exact match, in percent, over all 1,001 held-out problems, through the backend.

    All of them rather than a sample: batched they cost well under a second per model, and the
    first 200 alone stray by up to 2.5 points from the whole set.
    """
    problems = addition.held_out_problems()
    config = TransformersConfig(model_dir=str(model_dir), max_batch=len(problems), threads=1)
    backend = TransformersBackend.load(config)
    never = threading.Event()
    try:
        answers = await asyncio.gather(*(
            backend.generate(GenerateRequest(prompt=p.prompt, max_tokens=8), never)
            for p in problems))
    finally:
        await backend.aclose()
    correct = sum(a.finish_reason == "stop" and addition.is_correct(p, a.text)
                  for p, a in zip(problems, answers, strict=True))
    return 100.0 * correct / len(problems)


async def test_grades_are_met_ordered_and_recorded() -> None:
    """Each model is within 10 points of its grade, better grades measure strictly better, and
    the backend agrees with the exact match recorded in quality.json."""
    measured = {name: await exact_match(MODELS / name) for name in GRADES}
    for name, grade in GRADES.items():
        assert abs(measured[name] - grade) <= TOLERANCE, measured
        recorded = json.loads((MODELS / name / "quality.json").read_text())
        assert abs(measured[name] - recorded["held_out_exact_match"]) <= AGREEMENT, measured
    ordered = [measured[name] for name in GRADES]
    assert ordered == sorted(set(ordered)), measured


@pytest.mark.parametrize("name", sorted(GRADES))
def test_quality_files_describe_the_checkpoint(name: str) -> None:
    """quality.json records the grade, the measured held-out exact match and the step."""
    quality = json.loads((MODELS / name / "quality.json").read_text())
    assert quality["target_exact_match"] == GRADES[name]
    assert quality["held_out_exact_match"] >= GRADES[name]
    assert quality["held_out_problems"] == len(addition.held_out_problems())
    assert quality["task"] == "addition-2digit"
    assert quality["step"] > 0
