"""Per-chat settings: the sampling parameters and persona, with their allowed ranges.

The range types here are the single source of truth: the config file, the chat commands and the
backends all validate against them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Annotated, Any

from pydantic import Field

__all__ = [
    "PERSONA_MAX_CHARS",
    "RANDOM_SEED",
    "SEED_MAX",
    "ChatSettings",
    "MaxTokens",
    "MinP",
    "Persona",
    "RepeatPenalty",
    "Seed",
    "Temperature",
    "TopK",
    "TopP",
]

PERSONA_MAX_CHARS = 4000
RANDOM_SEED = -1
SEED_MAX = 2**32 - 1

Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]
TopK = Annotated[int, Field(ge=0, le=1000, description="0 turns top-k off")]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
MinP = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
RepeatPenalty = Annotated[float, Field(ge=0.5, le=2.0, allow_inf_nan=False)]
MaxTokens = Annotated[int, Field(ge=1, le=8192)]
Seed = Annotated[int, Field(ge=RANDOM_SEED, le=SEED_MAX, description="-1 means random")]
Persona = Annotated[str, Field(min_length=1, max_length=PERSONA_MAX_CHARS)]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """The effective settings of one chat: the config defaults overlaid with its overrides."""

    backend: str
    persona: str
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    max_tokens: int
    seed: int

    def with_overrides(self, overrides: dict[str, Any]) -> ChatSettings:
        """Return these settings with every non-None override applied."""
        present = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **present)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The setting names, in display order."""
        return tuple(f.name for f in fields(cls))
