"""A test plugin whose commands are tools (each one a way a tool can behave), and a helper
that makes the model's call to one."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from pydantic import Field

from botkit.core.commands import Plugin
from botkit.plugins.api import PluginContext
from botkit.tools.spec import ToolCall

ran: list[str] = []
release = asyncio.Event()
tools = Plugin("testtools", help="tools for tests")


@tools.command("add", tool=True)
async def add(ctx: PluginContext, a: Annotated[int, Field(ge=0, le=1000)], b: int = 0) -> str:
    """Add two whole numbers."""
    ran.append(f"add {a} {b}")
    return str(a + b)


@tools.command("hang", tool=True)
async def hang(ctx: PluginContext) -> str:
    """A tool that never answers."""
    ran.append("hang")
    await asyncio.Event().wait()
    return "never"


@tools.command("boom", tool=True)
async def boom(ctx: PluginContext) -> str:
    """A tool with a bug."""
    ran.append("boom")
    raise ZeroDivisionError("division by zero")


@tools.command("big", tool=True)
async def big(ctx: PluginContext) -> str:
    """A tool that returns 10 MB."""
    return "x" * 10_000_000


@tools.command("launch", tool=True, confirm=True)
async def launch(ctx: PluginContext) -> str:
    """A tool a person must confirm."""
    ran.append("launch")
    return "launched"


def call(name: str, arguments: Any, call_id: str = "c1") -> ToolCall:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(call_id, name, raw)
