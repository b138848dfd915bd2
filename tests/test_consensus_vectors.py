"""Yuma Consensus against the public reference vectors of YUMA.md (tests/vectors/).

Every key of every case's ``expected`` is compared: numbers within
``|actual - expected| <= atol + rtol * |expected|`` (the file's own tolerance), booleans exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocol.consensus import YumaOutput, YumaParams, yuma_epoch

VECTORS_PATH = Path(__file__).parent / "vectors" / "yuma_public_vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
RTOL: float = VECTORS["tolerance"]["rtol"]
ATOL: float = VECTORS["tolerance"]["atol"]
SINGLE = [c for c in VECTORS["cases"] if c["kind"] == "single"]
SEQUENCE = [c for c in VECTORS["cases"] if c["kind"] == "sequence"]
EPOCH_INPUT_KEYS = {"W", "S", "validator_permit", "last_update", "block_at_registration",
                    "current_block", "last_tempo"}


def _run(params: YumaParams, inputs: dict[str, Any], bonds_prev: Any) -> YumaOutput:
    rest = {k: v for k, v in inputs.items() if k not in {"W", "S", "bonds_prev"}}
    return yuma_epoch(inputs["W"], inputs["S"], params, bonds_prev=bonds_prev, **rest)


def _mismatches(out: YumaOutput, expected: dict[str, Any]) -> list[str]:
    """Keys of ``expected`` that ``out`` does not reproduce, with the worst deviation."""
    problems = []
    for key, value in expected.items():
        want = np.asarray(value)
        got = np.asarray(getattr(out, key))
        if got.shape != want.shape:
            problems.append(f"{key}: shape {got.shape} != {want.shape}")
        elif want.dtype == np.bool_:
            if got.dtype != np.bool_ or not np.array_equal(got, want):
                problems.append(f"{key}: {got.tolist()} != {want.tolist()}")
        else:
            err = np.abs(got - want)
            if not np.all(err <= ATOL + RTOL * np.abs(want)):
                problems.append(f"{key}: max |diff| {err.max():.3e}")
    return problems


def test_vector_file_is_the_shared_schema() -> None:
    """The copied vector file carries schema 1, six public cases and the documented tolerance."""
    assert VECTORS["schema_version"] == 1
    assert len(VECTORS["cases"]) == 6
    assert all(c["public"] for c in VECTORS["cases"])
    assert (RTOL, ATOL) == (1e-6, 1e-9)


def test_output_has_every_expected_key() -> None:
    """YumaOutput names exactly the EXPECTED keys of the schema, and the params every key."""
    names = {f.name for f in dataclasses.fields(YumaOutput)}
    for case in VECTORS["cases"]:
        expected = case["expected"] if case["kind"] == "single" else case["expected"]["epochs"][0]
        assert set(expected) == names
        assert set(case["params"]) == {f.name for f in dataclasses.fields(YumaParams)}


def test_default_params_match_the_vectors() -> None:
    """YumaParams() equals the chain defaults as the vectors spell them."""
    defaults = VECTORS["cases"][0]["params"]
    assert YumaParams(**defaults) == YumaParams()


@pytest.mark.parametrize("case", SINGLE, ids=[c["name"] for c in SINGLE])
def test_single_case(case: dict[str, Any]) -> None:
    """One epoch reproduces every expected number of the case."""
    out = _run(YumaParams(**case["params"]), case["inputs"], case["inputs"]["bonds_prev"])
    assert _mismatches(out, case["expected"]) == []


@pytest.mark.parametrize("case", SEQUENCE, ids=[c["name"] for c in SEQUENCE])
def test_sequence_case_as_specified(case: dict[str, Any]) -> None:
    """Each epoch matches when fed the previous epoch's *expected* bonds (YUMA.md §0)."""
    params = YumaParams(**case["params"])
    bonds_prev = case["inputs"]["bonds_prev"]
    epochs = zip(case["inputs"]["epochs"], case["expected"]["epochs"], strict=True)
    for t, (inputs, expected) in enumerate(epochs):
        assert set(inputs) == EPOCH_INPUT_KEYS
        out = _run(params, inputs, bonds_prev)
        assert _mismatches(out, expected) == [], f"epoch {t}"
        bonds_prev = expected["bonds"]


@pytest.mark.parametrize("case", SEQUENCE, ids=[c["name"] for c in SEQUENCE])
def test_sequence_case_chained(case: dict[str, Any]) -> None:
    """Each epoch also matches when fed our own bonds and permits, so errors cannot compound."""
    params = YumaParams(**case["params"])
    bonds_prev = case["inputs"]["bonds_prev"]
    permit = case["inputs"]["epochs"][0]["validator_permit"]
    epochs = zip(case["inputs"]["epochs"], case["expected"]["epochs"], strict=True)
    for t, (inputs, expected) in enumerate(epochs):
        assert np.array_equal(inputs["validator_permit"], permit), f"epoch {t} permits"
        out = _run(params, inputs, bonds_prev)
        assert _mismatches(out, expected) == [], f"epoch {t}"
        bonds_prev, permit = out.bonds, out.new_validator_permit
