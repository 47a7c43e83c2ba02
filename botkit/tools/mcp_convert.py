"""MCP's shapes in botkit's: a tool's exposed name and its ToolSpec, a call's result as text.

Pure functions, so the fast tests check them without a server.
"""

from __future__ import annotations

import binascii
import json
import re
from base64 import b64decode
from typing import Any

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
)

from botkit.tools.spec import ToolSpec

__all__ = ["MAX_NAME", "exposed_name", "result_text", "tool_spec"]

# OpenAI's rule for a function's name: ^[a-zA-Z0-9_-]{1,64}$; the other backends accept it.
MAX_NAME = 64
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def exposed_name(server: str, tool: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The name the model calls SERVER's TOOL by: `SERVER_TOOL`, each character outside
    [A-Za-z0-9_-] made `_`, cut to 64; if that is in TAKEN (two tools of one server that differ
    only in such characters, or past the cut), `_2`, `_3` ... takes the end."""
    base = _NOT_ALLOWED.sub("_", f"{server}_{tool}")[:MAX_NAME]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = base[: MAX_NAME - len(suffix)] + suffix
    return name


def tool_spec(server: str, tool: Tool, name: str, *, confirm: bool) -> ToolSpec:
    """SERVER's TOOL as the model sees it, under NAME (from exposed_name)."""
    description = (tool.description or tool.title or "").strip()
    if not description:
        description = f"the tool {tool.name} of the MCP server {server}"
    parameters: dict[str, Any] = dict(tool.input_schema)
    # Some servers leave out `type` or `properties` for a tool that takes no arguments; OpenAI
    # refuses a schema without them.
    parameters.setdefault("type", "object")
    if parameters["type"] == "object":
        parameters.setdefault("properties", {})
    return ToolSpec(
        name=name,
        description=description,
        parameters=parameters,
        source=f"mcp:{server}",
        confirm=confirm,
        default_on=False,
    )


def result_text(result: CallToolResult) -> str:
    """The content of a tools/call result as text: text parts joined by blank lines, other parts
    described in brackets ("[image/png, 1234 bytes]"); structured content as JSON where there is
    no text."""
    parts = [_part_text(block) for block in result.content]
    has_text = any(isinstance(block, TextContent) for block in result.content)
    if not has_text and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n\n".join(parts)


def _part_text(block: ContentBlock) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        return f"[{block.mime_type}, {_decoded_size(block.data)}]"
    if isinstance(block, ResourceLink):
        kind = f"{block.mime_type}, " if block.mime_type else ""
        return f"[link to {kind}{block.uri}]"
    if isinstance(block, EmbeddedResource):
        contents = block.resource
        if isinstance(contents, TextResourceContents):
            return contents.text
        if isinstance(contents, BlobResourceContents):
            kind = contents.mime_type or "binary"
            return f"[{kind} from {contents.uri}, {_decoded_size(contents.blob)}]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def _decoded_size(data: str) -> str:
    try:
        return f"{len(b64decode(data, validate=True))} bytes"
    except (binascii.Error, ValueError):
        return f"{len(data)} characters of data that is not valid base64"
