"""Tool calls on Ollama's /api/chat: the core's OpenAI-shaped messages and tools in Ollama's
shape, and the calls a reply made.

Ollama's shapes (api/types.go `Message`, `ToolCall`, `ToolCallFunction`; the `ollama` client's
_types.py Message): an assistant message's `tool_calls` are `[{"function": {"name",
"arguments": {...}}}]`, the arguments a JSON object, not text, with no call id; a tool's result
is `{"role": "tool", "content", "tool_name"}`. A user message's pictures go in its `images`, a
list of base64 strings (api.Message.Images). A reply's calls come whole in
`message.tool_calls` (usually in one chunk, before the last), arguments again an object.

Choices made here:
- Ollama has no `tool_choice`. "none" sends no tools; a forced name sends only that tool, so
  the model may call nothing else (it may still answer in words: Ollama cannot force a call).
- Stored arguments that are not a JSON object (the model wrote broken JSON, which the core
  answered with an error) go back as `{"_raw": "<the text>"}`: the client accepts only an
  object there, and the model still sees what it wrote.
- A reply's call gets the id `call_<n>` (its place among the reply's calls), as Ollama gives
  none; its arguments are the object written out as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from botkit.backends.base import BackendError, Message
from botkit.backends.openai_tools import chosen_tools
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec

__all__ = ["ollama_calls", "ollama_messages", "ollama_tools"]


def ollama_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> list[dict[str, Any]]:
    """The `tools` sent: none for "none", only the named one when a tool is forced."""
    chosen = chosen_tools(tools, choice)
    if choice != "auto":
        chosen = [t for t in chosen if t.name == choice]
    return [t.to_openai() for t in chosen]


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def _message(message: Message) -> dict[str, Any]:
    wired: dict[str, Any] = {"role": str(message["role"]), "content": message["content"]}
    calls = message.get("tool_calls")
    if calls:
        wired["tool_calls"] = [
            {"function": {"name": c["function"]["name"],
                          "arguments": _arguments(c["function"]["arguments"])}}
            for c in calls
        ]  # fmt: skip
    if message["role"] == "tool" and message.get("name"):
        wired["tool_name"] = message["name"]
    images = message.get("images")
    if images:
        # api.Message.Images ([]ImageData, []byte): base64 strings on the wire; the client
        # encodes bytes itself (a str it would first try as a file path).
        wired["images"] = [image.data for image in images]
    return wired


def ollama_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The messages in Ollama's shape (tool_call_id dropped: Ollama matches results to calls
    by order and tool_name)."""
    return [_message(m) for m in messages]


def ollama_calls(raw: Sequence[Any], first: int, where: str) -> list[ToolCall]:
    """The calls in one chunk's `message.tool_calls` (first: how many came before, for ids)."""
    calls: list[ToolCall] = []
    for n, call in enumerate(raw, start=first):
        function = call.get("function") if isinstance(call, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise BackendError(f"{where} sent a broken tool call: call {n} has no function name")
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        if isinstance(arguments, Mapping):
            text = json.dumps(arguments, ensure_ascii=False)
        elif isinstance(arguments, str) or arguments is None:
            text = arguments or ""  # not Ollama's shape, but the model's own words: kept
        else:
            raise BackendError(f"{where} sent a broken tool call: call {n}'s arguments came "
                               f"as a {type(arguments).__name__}, not a JSON object")  # fmt: skip
        calls.append(ToolCall(f"call_{n}", name, text))
    return calls
