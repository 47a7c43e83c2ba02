"""Where an in-process GGUF model comes from: a local file, a Hub model, or the bundled one.

Shared by `[backends.NAME]` (llama.cpp chat models) and `[embedder]` (embedding models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import field_validator, model_validator

from botkit.config.section import Section
from botkit.models.spec import ModelSpec, parse_model_spec

__all__ = ["GgufSource"]


class GgufSource(Section):
    """model_path (a local GGUF file) or model (a Hub model, "OWNER/REPO:QUANT" or
    "hf://OWNER/REPO/FILE.gguf", downloaded on the first start as `botkit models pull` does,
    then loaded from the cache); neither: the bundled model."""

    model_path: Path | None = None
    model: str | None = None

    @field_validator("model")
    @classmethod
    def _model_spec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(parse_model_spec(value))  # ValueError: what is wrong, and the forms

    @property
    def hub_model(self) -> ModelSpec | None:
        """The Hub model to resolve at start, if `model` is set."""
        return parse_model_spec(self.model) if self.model else None

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        if self.model and self.model_path:
            raise ValueError("set model (a Hub model) or model_path (a local GGUF file), not both")
        return self
