"""The base of every config section: unknown keys are refused and a loaded config is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """A table of the config file: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
