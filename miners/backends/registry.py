"""Choose a backend from a spec: ``echo-math``, ``garbage``, ``hang`` or a model directory.

Importing this module imports no torch; only loading a model directory does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from miners.backends import Backend
from protocol.errors import ConfigError

ECHO_MATH = "echo-math"
#: Misbehaving backends for fault injection (see :mod:`miners.backends.faulty`).
FAULTY = ("garbage", "hang")


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Options for model-directory backends (ignored by ``echo-math``)."""

    device: str = "cpu"
    max_batch: int | None = None
    batch_window_ms: float | None = None
    max_new_tokens_limit: int | None = None
    capabilities: tuple[str, ...] = ()
    dtype: str = "float32"
    seed: int = 0
    #: Model-loading progress bars on stderr (for a person at a terminal; see
    #: :class:`~miners.backends.transformers_backend.TransformersConfig`).
    progress_bars: bool = False


def load_backend(spec: str, options: BackendOptions = BackendOptions()) -> Backend:
    """Return the backend ``spec`` names, loading model weights if it is a directory.

    Raises:
        ConfigError: ``spec`` is neither ``echo-math`` nor a model directory, or loading failed.
    """
    if spec == ECHO_MATH:
        from miners.backends.deterministic import EchoMathBackend  # noqa: PLC0415 - light path

        return EchoMathBackend()
    if spec in FAULTY:
        from miners.backends import faulty  # noqa: PLC0415 - fault injection (tests, demo)

        return faulty.GarbageBackend() if spec == faulty.GARBAGE else faulty.HangingBackend()
    if not (Path(spec) / "config.json").is_file():
        raise ConfigError(f"backend {spec!r} is neither {ECHO_MATH!r}, {FAULTY} nor a model "
                          "directory (a folder with config.json)")
    # torch and transformers load only for real models: echo-math miners start in milliseconds.
    from miners.backends.transformers_backend import (  # noqa: PLC0415
        TransformersBackend,
        TransformersConfig,
    )

    overrides = {k: v for k, v in (("max_batch", options.max_batch),
                                   ("batch_window_ms", options.batch_window_ms),
                                   ("max_new_tokens_limit", options.max_new_tokens_limit))
                 if v is not None}
    config = TransformersConfig(model_dir=spec, device=options.device,
                                capabilities=options.capabilities, dtype=options.dtype,
                                seed=options.seed, progress_bars=options.progress_bars,
                                **overrides)  # type: ignore[arg-type]
    return TransformersBackend.load(config)
