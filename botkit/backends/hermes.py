"""The Hermes tool-call format (Qwen2.5's): how tools, calls and results are written in a
prompt, and how the calls a model wrote are read back out of its reply.

Used by the in-process llama.cpp backend: where the GGUF's own chat template does not render
tools, botkit renders them this way itself (a `# Tools` block after the system message,
calls as `<tool_call>` text, results as a user-side `<tool_response>` turn: data, never
system text). Nothing here loads a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botkit.tools.spec import ToolCall, ToolSpec

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "CallFilter",
    "ParsedCalls",
    "call_text",
    "parse_calls",
    "response_text",
    "tools_block",
]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

# Qwen2.5's chat template, word for word (its `tools` branch), so a model trained on it
# reads botkit's rendering as its own.
_TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
_BLOCK = re.compile(f"{re.escape(CALL_OPEN)}(.*?)({re.escape(CALL_CLOSE)}|$)", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def tools_block(tools: Sequence[ToolSpec]) -> str:
    """The text appended to the system message that declares tools (one JSON per line)."""
    lines = "".join("\n" + json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return _TOOLS_INTRO + lines + _TOOLS_OUTRO


def call_text(name: str, arguments: str) -> str:
    """An assistant's call as the model writes it. arguments is the JSON text it wrote (kept
    as written when it is JSON; any other text is quoted, so the block stays one JSON object)."""
    try:
        json.loads(arguments or "{}")
    except json.JSONDecodeError:
        arguments = json.dumps(arguments, ensure_ascii=False)
    head = json.dumps(name, ensure_ascii=False)
    return f'{CALL_OPEN}\n{{"name": {head}, "arguments": {arguments or "{}"}}}\n{CALL_CLOSE}'


def response_text(content: str) -> str:
    """A tool's result as the user-side turn Qwen's template writes for it."""
    return f"<tool_response>\n{content}\n</tool_response>"


@dataclass(frozen=True, slots=True)
class ParsedCalls:
    """The calls read out of a reply; complete is False when there are none, or one was cut
    off (no closing tag, and not a whole JSON call: the reply ran out inside it)."""

    calls: tuple[ToolCall, ...]
    complete: bool


def parse_calls(text: str, ids: Iterator[int]) -> ParsedCalls:
    """The `<tool_call>` blocks in text (from the first opening tag on). Each becomes a
    ToolCall named by its "name"; its arguments are the "arguments" value as JSON text, or,
    when the block is not JSON, the block's raw text (the core then tells the model why)."""
    calls: list[ToolCall] = []
    complete = True
    for match in _BLOCK.finditer(text):
        inner, closed = match.group(1).strip(), bool(match.group(2))
        name, arguments, whole = _read_call(inner)
        complete = complete and (closed or whole)
        calls.append(ToolCall(f"call_{next(ids)}", name, arguments))
    return ParsedCalls(tuple(calls), complete and bool(calls))


def _read_call(inner: str) -> tuple[str, str, bool]:
    """(name, arguments, whether the block is a whole JSON call)."""
    try:
        obj: Any = json.loads(inner)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        arguments = obj.get("arguments", {})
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            return obj["name"], arguments, True
        return obj["name"], json.dumps(arguments, ensure_ascii=False), True
    found = _NAME.search(inner)
    return (json.loads(f'"{found.group(1)}"') if found else ""), inner, False


@dataclass
class CallFilter:
    """Splits a streamed reply into what the user sees and the call syntax they must not.

    Text is passed on until CALL_OPEN; a tail that could be the start of it is held back
    until the next piece shows it is not. From the tag on, everything is kept in `captured`.
    """

    captured: str = ""
    started: bool = False
    _held: str = field(default="", repr=False)

    def feed(self, text: str) -> str:
        """The part of text (with what was held back) the user may see now."""
        if self.started:
            self.captured += text
            return ""
        text = self._held + text
        at = text.find(CALL_OPEN)
        if at >= 0:
            self.started, self.captured, self._held = True, text[at:], ""
            return text[:at]
        keep = _partial_tag(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of the reply: what was held back (it did not become a tag)."""
        held, self._held = self._held, ""
        return held


def _partial_tag(text: str) -> int:
    """Length of the longest tail of text that is a proper prefix of CALL_OPEN."""
    for size in range(min(len(text), len(CALL_OPEN) - 1), 0, -1):
        if CALL_OPEN.startswith(text[-size:]):
            return size
    return 0
