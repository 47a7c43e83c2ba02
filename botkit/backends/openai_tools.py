"""Tool calls on an OpenAI-compatible server: the request's `tools` and `tool_choice`, the
calls assembled from a stream's `delta.tool_calls` fragments, and a refusal of `tools`.

A streamed call comes in fragments keyed by `index` (OpenAI's API reference, "The chat
completion chunk object"): the first names the call's `id` and `function.name`, the later ones
carry pieces of `function.arguments`, a JSON text, and the choice ends with `finish_reason:
"tool_calls"`. llama_cpp.server (llama_cpp/llama_chat_format.py,
`_convert_completion_to_chat_function`) repeats the id and the name in every fragment;
llama-server and OpenAI send them once. Fragments of several calls may interleave: each is
assembled by its index.

What a server may get wrong, and what happens (each checked in tests/unit/backends):
- A fragment without an integer `index` (or a negative one): BackendError; there is no telling
  which call it continues.
- `arguments` that are a JSON object rather than text (some servers send Ollama's shape): the
  object written out as JSON, but only as the call's whole arguments; any other type, or an
  object mixed with text: BackendError naming the type.
- A call that never gets a name, or changes its name midway: BackendError.
- No id: `call_<index>` is made up.
- Arguments past MAX_ARGUMENTS characters, or more than MAX_CALLS calls: BackendError (a
  runaway model or server), said before the rest is read.
- Arguments that are not valid JSON: the call is handed on with the text as the model wrote it;
  the core tells the model what is wrong (ToolCall.parsed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from botkit.backends.base import BackendError
from botkit.backends.openai_errors import error_message, refused_argument
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec

__all__ = [
    "MAX_ARGUMENTS",
    "MAX_CALLS",
    "ToolCallFragments",
    "chosen_tools",
    "tool_refusal",
    "wire_tool_choice",
    "wire_tools",
]

MAX_ARGUMENTS = 64 * 1024  # characters of one call's arguments
MAX_CALLS = 64  # calls in one reply

# Servers' words for "no tools here" (each only read from an error about the request itself):
# api.openai.com's param "tools"/"tool_choice"; vLLM without --enable-auto-tool-choice
# ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set');
# llama-server without --jinja ("tools param requires --jinja flag", a 500 server_error;
# "Unsupported param: tool_choice"; tools/server/utils.hpp `oaicompat_chat_params_parse`).
_TOOL_WORDS = re.compile(r"\btools?\b|\btool_choice\b|\btool[ _-]call|--jinja", re.IGNORECASE)


def chosen_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> list[ToolSpec]:
    """The declarations a request carries: none for "none" (a server would render them into
    the prompt anyway, costing window for nothing), else all of them. A named choice must be
    one of them: the core's mistake, said before a server's refusal could be taken for "this
    server has no tools"."""
    if choice == "none":
        return []
    if choice != "auto" and all(t.name != choice for t in tools):
        names = ", ".join(t.name for t in tools) or "none"
        raise BackendError(f"tool_choice names {choice!r}, which is not among the tools ({names})")
    return list(tools)


def wire_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> list[dict[str, Any]]:
    """The `tools` sent, in OpenAI's shape (see chosen_tools)."""
    return [t.to_openai() for t in chosen_tools(tools, choice)]


def wire_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    """OpenAI's `tool_choice`: "auto", or the named function the model must call."""
    if choice in ("auto", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def tool_refusal(exc: openai.APIStatusError) -> str | None:
    """Why the server will not take `tools`, when this error says so (a 400 or 422 about the
    tools or tool_choice argument, or llama-server's 500 asking for --jinja); else None. An
    error whose `param` names a message is about that message (it may quote the user's
    words), never about tools."""
    param = refused_argument(exc)
    detail = error_message(exc)
    if exc.status_code == 500 and "--jinja" in detail:
        return f"the server refused `tools` ({exc.status_code}: {detail})"
    if exc.status_code not in (400, 422):
        return None
    if param in ("tools", "tool_choice") or (
        not (param or "").startswith("messages") and _TOOL_WORDS.search(detail)
    ):
        return f"the server refused `tools` ({exc.status_code}: {detail})"
    return None


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    parts: list[str] = field(default_factory=list)
    size: int = 0
    whole: bool = False  # the arguments came as one object


class ToolCallFragments:
    """The calls of one streamed reply, assembled from its `delta.tool_calls` fragments (each
    a plain dict, as the server sent it)."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._calls: dict[int, _Call] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def _broken(self, what: str) -> BackendError:
        return BackendError(f"{self._where} sent a broken tool call: {what}")

    def add(self, fragment: Mapping[str, Any]) -> None:
        """Take one fragment; BackendError if it cannot belong to a call (see the module)."""
        index = fragment.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise self._broken(f"a fragment without a valid `index` ({index!r})")
        call = self._calls.get(index)
        if call is None:
            if len(self._calls) >= MAX_CALLS:
                raise self._broken(f"more than {MAX_CALLS} calls in one reply")
            call = self._calls[index] = _Call()
        if isinstance(fragment.get("id"), str) and fragment["id"] and call.id is None:
            call.id = fragment["id"]
        function = fragment.get("function") or {}
        if not isinstance(function, Mapping):
            raise self._broken(f"call {index}'s `function` is a {type(function).__name__}")
        name = function.get("name")
        if isinstance(name, str) and name:
            if call.name is not None and name != call.name:
                raise self._broken(f"call {index} changed its name from {call.name!r} to {name!r}")
            call.name = name
        self._arguments(index, call, function.get("arguments"))

    def _arguments(self, index: int, call: _Call, arguments: Any) -> None:
        if arguments is None or arguments == "":
            return
        if isinstance(arguments, Mapping) and not call.parts:
            text, call.whole = json.dumps(arguments, ensure_ascii=False), True
        elif isinstance(arguments, str) and not call.whole:
            text = arguments
        else:
            raise self._broken(
                f"call {index}'s arguments came as a {type(arguments).__name__}, not as JSON text"
            )
        call.size += len(text)
        if call.size > MAX_ARGUMENTS:
            raise self._broken(
                f"call {index}'s arguments ran past {MAX_ARGUMENTS // 1024} KiB "
                f"({call.name or 'no name yet'})"
            )
        call.parts.append(text)

    def calls(self) -> tuple[ToolCall, ...]:
        """The whole calls, in index order; BackendError for a call without a name."""
        done: list[ToolCall] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.name is None:
                raise self._broken(f"call {index} has no function name")
            done.append(ToolCall(call.id or f"call_{index}", call.name, "".join(call.parts)))
        return tuple(done)
