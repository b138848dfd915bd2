"""Seeded randomness derived from the validator's secret: one generator per purpose and step.

A miner must not be able to predict its challenges, so every generator is seeded from a
SHA-256 over a domain tag, the validator's secret, the purpose, the step and (for challenges)
the miner's hotkey. Hashing first gives fixed-width, unambiguous input to numpy's
``SeedSequence`` (its own integer-list coercion would let different tuples collide).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from validators.errors import ValidatorError

__all__ = ["MIN_SECRET_BYTES", "derive_rng", "seed_digest"]

#: 128 bits: enough that challenges cannot be brute-forced from observed prompts.
MIN_SECRET_BYTES = 16
_DOMAIN = b"ensemblenet/validator-rng/v1"


def seed_digest(secret: bytes, purpose: str, step: int, hotkey: str = "") -> bytes:
    """Return the 32-byte digest that seeds the generator of ``(purpose, step, hotkey)``.

    Raises:
        ValidatorError: ``secret`` is shorter than :data:`MIN_SECRET_BYTES` or ``step`` is
            negative.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ValidatorError(f"the validator secret must have at least {MIN_SECRET_BYTES} bytes")
    if step < 0:
        raise ValidatorError(f"step must be >= 0, got {step}")
    parts = (_DOMAIN, secret, purpose.encode(), hotkey.encode())
    # Length-prefix every variable part so ("ab", "c") and ("a", "bc") hash differently.
    framed = b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return hashlib.sha256(framed + struct.pack(">Q", step)).digest()


def derive_rng(secret: bytes, purpose: str, step: int, hotkey: str = "") -> np.random.Generator:
    """Return a fresh PCG64 generator for ``(purpose, step, hotkey)`` under ``secret``.

    Deterministic: equal arguments give generators that draw equal sequences.
    Raises what :func:`seed_digest` raises.
    """
    entropy = int.from_bytes(seed_digest(secret, purpose, step, hotkey), "big")
    return np.random.default_rng(np.random.SeedSequence(entropy))
