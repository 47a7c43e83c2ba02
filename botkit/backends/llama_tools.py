"""Tool calls in the in-process llama.cpp backend: what a reply with tools needs from the
engine (a grammar, or a watch that switches one in), and how its streamed text becomes the
user's text and the calls.

A forced tool_choice constrains the whole reply to one `<tool_call>` for that tool; "auto"
generates freely and, once the reply writes `<tool_call>`, constrains the rest to calls of
the given tools (llama_jobs.CallWatch). Either way the call syntax never reaches the user.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from botkit.backends.base import BackendError, Chunk
from botkit.backends.hermes import CallFilter, parse_calls
from botkit.backends.llama_jobs import CallWatch
from botkit.backends.tool_grammar import after_tag_grammar, forced_grammar
from botkit.tools.spec import ToolChoice, ToolSpec

__all__ = ["ToolPlan", "ToolReply", "tool_format", "tool_plan"]

_NATIVE = "Hermes <tool_call> (the model's template)"
_BOTKIT = (
    "Hermes <tool_call> (botkit's rendering; the model was not trained on it: unforced calls "
    "are unreliable)"
)


def tool_format(native: bool) -> str:
    """/model's line on how this model is given tools and how it calls them."""
    return _NATIVE if native else _BOTKIT


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What the engine does for one reply with tools: a grammar for all of it (forced), or
    a watch that constrains the reply once it starts a call (auto)."""

    grammar: str | None
    watch: CallWatch | None


def tool_plan(tools: Sequence[ToolSpec], choice: ToolChoice) -> ToolPlan | None:
    """The plan for these tools and tool_choice; None without tools. Raises BackendError for
    a tool_choice that names no given tool, or a schema no grammar can be built from."""
    if not tools or choice == "none":
        return None
    if choice == "auto":
        return ToolPlan(None, CallWatch(_after_tag(_key(tools))))
    chosen = [t for t in tools if t.name == choice]
    if not chosen:
        names = ", ".join(t.name for t in tools)
        raise BackendError(
            f"tool_choice names {choice!r}, which is not among this reply's tools ({names}); "
            'use one of them, "auto" or "none"'
        )
    return ToolPlan(_forced(_key(chosen)), None)


def _key(tools: Sequence[ToolSpec]) -> str:
    return json.dumps([[t.name, t.parameters] for t in tools], sort_keys=True)


# Grammars are rebuilt only when the tools change (a chat's tools are the same each turn).
@lru_cache(maxsize=64)
def _forced(key: str) -> str:
    return forced_grammar(_specs(key)[0])


@lru_cache(maxsize=64)
def _after_tag(key: str) -> str:
    return after_tag_grammar(_specs(key))


def _specs(key: str) -> list[ToolSpec]:
    return [ToolSpec(name, "", parameters) for name, parameters in json.loads(key)]


class ToolReply:
    """Turns a reply's chunks into what the user sees and, at the end, the calls."""

    def __init__(self, ids: Iterator[int], max_tokens: int) -> None:
        self._ids = ids
        self._max_tokens = max_tokens
        self._filter = CallFilter()

    def feed(self, chunk: Chunk) -> Iterator[Chunk]:
        """The chunks to stream for this one; the last (with usage) carries the calls.
        Raises BackendError for a call that was cut off."""
        visible = self._filter.feed(chunk.text)
        usage = chunk.usage
        if usage is None:
            if visible:
                yield Chunk(visible)
            return
        if not self._filter.started:
            yield Chunk(visible + self._filter.flush(), usage=usage)
            return
        if visible:
            yield Chunk(visible)
        if usage.stop_reason == "cancelled":
            yield Chunk("", usage=usage)
            return
        parsed = parse_calls(self._filter.captured, self._ids)
        if not parsed.complete:
            if usage.stop_reason == "length":
                raise BackendError(
                    f"the reply reached max_tokens ({self._max_tokens}) inside a tool call, "
                    "so the call is incomplete and was not made; raise max_tokens or ask for "
                    "a smaller call"
                )
            raise BackendError("the model ended its reply inside an unfinished tool call")
        yield Chunk("", usage=replace(usage, stop_reason="tool_calls"), tool_calls=parsed.calls)
