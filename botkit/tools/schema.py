"""A command's signature as a tool's JSON schema: the same pydantic declaration that validates
typed text and Discord's options describes the arguments to the model."""

from __future__ import annotations

from typing import Any

from pydantic import create_model

from botkit.core.commands import Command
from botkit.tools.spec import ToolSpec

__all__ = ["command_tool"]


def _schema(command: Command) -> dict[str, Any]:
    fields: dict[str, Any] = {
        p.name: (p.annotation, ... if p.required else p.default) for p in command.params
    }
    model = create_model(f"{command.name}_arguments", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def command_tool(command: Command) -> ToolSpec:
    """The tool a command declared with tool=True offers: its name, its help as the
    description and its parameters as the schema (botkit's own tools are on by default)."""
    return ToolSpec(
        name=command.name,
        description=command.help,
        parameters=_schema(command),
        source=command.plugin or "botkit",
        confirm=command.confirm,
        default_on=True,
    )
