"""What a tool is on the wire between the core and the backends: its declaration, a call the
model made, and the result that goes back to it.

Every backend speaks these shapes (OpenAI `tools` / `tool_calls`, Ollama `tools`, llama.cpp's
Hermes-style `<tool_call>` text); the conversation loop and the tool registry speak them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ToolCall",
    "ToolCallError",
    "ToolChoice",
    "ToolResult",
    "ToolSpec",
    "wire_call",
]

# "auto": the model decides; "none": it may not call; a tool's name: it must call that one.
ToolChoice = Literal["auto", "none"] | str


class ToolCallError(ValueError):
    """A call the model made cannot run as given (its arguments are not JSON, not an object,
    or do not fit the tool's schema); the message says why, fit to show and to give back to
    the model."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description and a JSON schema of its arguments.

    source: "botkit" or a plugin's name for a command declared as a tool, "mcp:SERVER" for an
    MCP server's. confirm: a person in the chat confirms each call before it runs.
    default_on: whether a chat that never ran /tools has it on (MCP servers' are off).
    """

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    source: str = "botkit"
    confirm: bool = False
    default_on: bool = True

    def to_openai(self) -> dict[str, Any]:
        """The declaration in OpenAI's (and Ollama's) `tools` shape."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: an id (the backend's, or made up where it gives none), the
    tool's name and its arguments as the JSON text the model wrote (not yet trusted)."""

    id: str
    name: str
    arguments: str

    def parsed(self) -> dict[str, Any]:
        """The arguments as a JSON object; ToolCallError if they are not one."""
        text = self.arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolCallError(
                f"the arguments of {self.name} are not valid JSON ({exc.msg} at character "
                f"{exc.pos})"
            ) from None
        if not isinstance(value, dict):
            raise ToolCallError(
                f"the arguments of {self.name} must be a JSON object, not {type(value).__name__}"
            )
        return value


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call returned (or why it failed), as text for the model; seconds it took."""

    call_id: str
    name: str
    content: str
    is_error: bool = False
    seconds: float = 0.0


def wire_call(call: ToolCall) -> dict[str, Any]:
    """A call in the assistant message's `tool_calls` list (OpenAI's shape; each backend
    converts it to its own)."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
