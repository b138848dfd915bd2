"""Yuma gives the same bits whatever SIMD code numpy picks for this CPU (ledger consensus).

numpy chooses its vectorised kernels (AVX-512, AVX2, baseline) by CPU features at run time, and
some, ``exp`` among them, round differently in the last bit. Nodes on different hardware must
still compute identical shares, or the chain forks. The same seeded epochs run in subprocesses
with the wider instruction sets switched off (``NPY_DISABLE_CPU_FEATURES``; names this CPU or
numpy lacks are ignored, so on such machines the runs simply coincide) must print one digest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from protocol.consensus.yuma import _exp

SCRIPT = Path(__file__).parent / "yuma_digest.py"
#: numpy 2.x x86 dispatch targets, widest first; each setting switches off one more level.
SETTINGS = ("", "AVX512_SPR AVX512_ICL X86_V4", "AVX512_SPR AVX512_ICL X86_V4 X86_V3")


def _digest(disabled: str) -> str:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_epochs_are_identical_under_every_simd_level() -> None:
    """One digest over 150 epochs (Yuma3 with liquid alpha, and Yuma2) for every setting."""
    digests = {setting: _digest(setting) for setting in SETTINGS}
    assert len(set(digests.values())) == 1, digests


def test_exp_is_within_one_ulp_of_numpy() -> None:
    """The deterministic ``exp`` of liquid alpha loses nothing measurable against ``np.exp``."""
    x = np.linspace(-20.0, 20.0, 400_001)
    ulps = np.abs(_exp(x) - np.exp(x)) / np.spacing(np.exp(x))
    assert float(ulps.max()) <= 1.0
    assert _exp(np.array([0.0]))[0] == 1.0
