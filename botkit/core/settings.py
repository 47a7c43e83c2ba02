"""Per-chat settings: the single declaration of every sampling option and of the persona.

`SamplingOptions` declares each option once: its type, range, default and a one-line help.
Everything else derives from it: the config's [defaults], the per-chat overrides (stored as one
JSON object, so a new option needs no migration), the backends' generation parameters
(`GenerationParams`), and the setting commands (`/temp`, `/topk`, … are generated from the
fields that name a command). Adding a sampler is one field here, plus a backend's name for it
where that differs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "EXAMPLE_MAX_CHARS",
    "MAX_EXAMPLES",
    "PERSONA_MAX_CHARS",
    "RANDOM_SEED",
    "SEED_MAX",
    "ChatSettings",
    "Example",
    "Examples",
    "MaxTokens",
    "MinP",
    "Persona",
    "RepeatPenalty",
    "SamplingOptions",
    "Seed",
    "SeedValue",
    "Temperature",
    "ToolName",
    "ToolSwitches",
    "TopK",
    "TopP",
    "max_reply_tokens",
    "option_type",
    "valid_overrides",
]

log = logging.getLogger(__name__)

PERSONA_MAX_CHARS = 4000
EXAMPLE_MAX_CHARS = 500  # each side of a few-shot example
MAX_EXAMPLES = 8
RANDOM_SEED = -1
SEED_MAX = 2**32 - 1


def _option(
    default: Any, help: str, *, command: str | None = None, note: str | None = None, **range_: Any
) -> Any:
    """A field of SamplingOptions: range, default, help; `command` names its setting command
    (None: no generated command), `note` is added where the allowed values are described."""
    extra: dict[str, Any] = {"command": command, "note": note}
    return Field(default, description=help, json_schema_extra=extra, **range_)


class SamplingOptions(BaseModel):
    """How the next token is chosen, and how long a reply may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = _option(
        0.7, "Show or set the temperature: 0 always picks the likeliest token, higher is more "
        "random", command="temp", ge=0.0, le=2.0, allow_inf_nan=False,
    )  # fmt: skip
    top_k: int = _option(
        40, "Show or set top-k: sample only from the k likeliest tokens (0 = off)",
        command="topk", note="0 turns top-k off", ge=0, le=1000,
    )  # fmt: skip
    top_p: float = _option(
        0.95, "Show or set top-p: sample from the smallest set of tokens whose probabilities "
        "reach p", command="topp", gt=0.0, le=1.0, allow_inf_nan=False,
    )  # fmt: skip
    min_p: float = _option(
        0.05, "Show or set min-p: drop tokens less likely than min_p × the top token's "
        "probability", command="minp", ge=0.0, le=1.0, allow_inf_nan=False,
    )  # fmt: skip
    repeat_penalty: float = _option(
        1.1, "Show or set the repeat penalty (1 = off; above 1 discourages repeating tokens)",
        command="repeatpenalty", ge=0.5, le=2.0, allow_inf_nan=False,
    )  # fmt: skip
    presence_penalty: float = _option(
        0.0, "Show or set the presence penalty: subtracted once from every token already in "
        "the reply (0 = off; above 0: new topics)", command="presencepenalty",
        ge=-2.0, le=2.0, allow_inf_nan=False,
    )  # fmt: skip
    frequency_penalty: float = _option(
        0.0, "Show or set the frequency penalty: subtracted per earlier use of a token "
        "(0 = off; above 0: less repetition)", command="frequencypenalty",
        ge=-2.0, le=2.0, allow_inf_nan=False,
    )  # fmt: skip
    max_tokens: int = _option(
        256, "Show or set the longest reply, in tokens (reserved from the context window)",
        command="maxtokens", ge=1, le=8192,
    )  # fmt: skip
    # Its command is written by hand: it takes "random" as well as a number.
    seed: int = _option(
        RANDOM_SEED, "The random seed: a number makes replies repeatable", note="-1 means random",
        ge=RANDOM_SEED, le=SEED_MAX,
    )  # fmt: skip

    def sampling(
        self, names: dict[str, str] | None = None, *, without: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The sampling options alone (without what a subclass adds), under a backend's names
        where they differ (names), leaving out what the backend applies otherwise (without)."""
        names = names or {}
        return {
            names.get(name, name): getattr(self, name)
            for name in SamplingOptions.model_fields
            if name not in without
        }


def option_type(name: str) -> Any:
    """The type of an option, with its range, for a command parameter or a config key."""
    info = SamplingOptions.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    note = extra.get("note")
    return Annotated[
        info.annotation, Field(description=note if isinstance(note, str) else None), *info.metadata
    ]


Temperature = option_type("temperature")
TopK = option_type("top_k")
TopP = option_type("top_p")
MinP = option_type("min_p")
RepeatPenalty = option_type("repeat_penalty")
MaxTokens = option_type("max_tokens")
Seed = option_type("seed")
# A seed as /seed and /retry take it: a number, or "random" (RANDOM_SEED in the settings).
SeedValue = Annotated[int, Field(ge=0, le=SEED_MAX)] | Literal["random"]
Persona = Annotated[str, Field(min_length=1, max_length=PERSONA_MAX_CHARS)]
ExampleText = Annotated[str, Field(min_length=1, max_length=EXAMPLE_MAX_CHARS)]
# A few-shot example: what the user says and what the assistant answers.
Example = tuple[ExampleText, ExampleText]
Examples = Annotated[tuple[Example, ...], Field(max_length=MAX_EXAMPLES)]
# A tool's name as every model API accepts it (OpenAI: ^[a-zA-Z0-9_-]{1,64}$).
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_TOOL_SWITCHES = 256
ToolSwitches = Annotated[dict[ToolName, bool], Field(max_length=MAX_TOOL_SWITCHES)]


class ChatSettings(SamplingOptions):
    """The settings of a chat: the config's [defaults], or those overlaid with the chat's own
    overrides. (The backend and the persona are settings too, but not sampling options.)"""

    backend: str = Field("local", min_length=1, max_length=64)
    persona: Persona = "You are a helpful assistant."
    # Few-shot examples (in-context learning): user/assistant pairs right after the persona.
    examples: Examples = ()
    # Recall: the chat's messages that fell out of the window come back when relevant to a
    # new one (/memory on|off; [memory] sets how many tokens they may take).
    memory: bool = True
    # Tools this chat turned on or off (/tools on|off NAME), by name; a tool not named here
    # is on or off as it comes (botkit's on, MCP servers' off).
    tools: ToolSwitches = {}

    def with_overrides(self, overrides: dict[str, Any]) -> ChatSettings:
        """These settings with every non-None override applied (overrides are validated when
        they are stored and when they are read)."""
        present = {k: v for k, v in overrides.items() if v is not None}
        return self.model_copy(update=present) if present else self

    def for_chat(self, overrides: dict[str, Any], backends: Collection[str]) -> ChatSettings:
        """A chat's effective settings: these (the defaults) with its overrides, except a
        backend no longer among backends (removed from the config): the default one then."""
        settings = self.with_overrides(overrides)
        if settings.backend not in backends:
            settings = self.with_overrides({**overrides, "backend": None})
        return settings

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The setting names, in display order."""
        return (
            "backend", "persona", "examples", "memory", "tools", *SamplingOptions.model_fields
        )  # fmt: skip


def max_reply_tokens(window: int) -> int:
    """The largest max_tokens a context window of window tokens allows: the reply reserve
    stays below half the window, so the conversation keeps room (the one rule for the config,
    /maxtokens and /model)."""
    return window // 2 - 1


def valid_overrides(raw: Any) -> dict[str, Any]:
    """A chat's stored overrides, each one checked; one that is no longer valid (an option
    removed, or a range narrowed since it was stored) is left out, with a warning."""
    if not isinstance(raw, dict):
        return {}
    kept: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        try:
            checked = ChatSettings.model_validate({name: value})
        except ValidationError as exc:
            log.warning("ignoring a stored setting %s=%r: %s", name, value, exc.errors()[0]["msg"])
            continue
        # The validated value: JSON has lists where a setting holds tuples (the examples).
        kept[name] = getattr(checked, name)
    return kept
