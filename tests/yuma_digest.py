"""Print one SHA-256 over the exact bits of many Yuma epochs (run as a subprocess).

``tests/test_consensus_determinism.py`` runs this under several ``NPY_DISABLE_CPU_FEATURES``
settings: numpy picks SIMD code paths by CPU at run time, and consensus needs every node to get
the same bits whatever its CPU.

    python tests/yuma_digest.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.consensus import YumaParams, yuma_epoch

EPOCHS = 150
N = 32


def digest() -> str:
    """The digest of every output of ``EPOCHS`` seeded random epochs (Yuma3 with liquid alpha
    mostly, where the sigmoid's ``exp`` is; Yuma2 every fifth)."""
    sha = hashlib.sha256()
    rng = np.random.default_rng(20261128)
    for epoch in range(EPOCHS):
        weights = rng.integers(0, 65536, (N, N)).astype(np.float64)
        stake = rng.integers(1, 10**12, N).astype(np.float64)
        bonds = rng.integers(0, 65536, (N, N)) / 65535
        yuma3 = epoch % 5 != 0
        params = YumaParams(yuma3=yuma3, liquid_alpha=yuma3, activity_cutoff=1000)
        out = yuma_epoch(weights, stake, params, bonds_prev=bonds)
        for field in dataclasses.fields(out):
            value = np.asarray(getattr(out, field.name), dtype=np.float64)
            sha.update(np.ascontiguousarray(value).tobytes())
    return sha.hexdigest()


if __name__ == "__main__":
    print(digest())
