"""Tools, shown and switched: /tools lists what the model may call in this chat (with each
tool's schema, whether it is on, and whether the chat's model can call tools at all),
/tools on|off NAME switches one, /confirm and /deny answer a call that waits for a person, and
/time is botkit's own tool: the date and time now, which a model cannot know by itself.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from botkit.core.commands import CommandError, Plugin
from botkit.core.context import Context
from botkit.tools.spec import ToolSpec

__all__ = ["plugin"]

plugin = Plugin("tools", help="Tools the model may call", internal=True)

_SCHEMA_CHARS = 300
ToolArg = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a tool's name")]
Zone = Annotated[str, Field(max_length=64, description="an IANA time zone like Europe/Paris")]


def _schema(spec: ToolSpec) -> str:
    shown = json.dumps(spec.parameters.get("properties", {}), ensure_ascii=False)
    return shown if len(shown) <= _SCHEMA_CHARS else f"{shown[: _SCHEMA_CHARS - 1]}…"


def _line(spec: ToolSpec, on: bool) -> str:
    state = "on" if on else "off"
    confirm = ", asks to confirm" if spec.confirm else ""
    summary = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
    return (
        f"  {'✅' if on else '⛔'} {spec.name} ({spec.source}, {state}{confirm}) — {summary}\n"
        f"      arguments: {_schema(spec)}"
    )


@plugin.command("tools", changes_settings=True)
async def tools(
    ctx: Context, action: Literal["on", "off"] | None = None, name: ToolArg | None = None
) -> str:
    """List the tools the model may call here, or turn one on or off: /tools on NAME."""
    registry = ctx.services.tools
    specs = registry.specs()
    if action is not None:
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            known = ", ".join(s.name for s in specs) or "none"
            raise CommandError(f"/tools {action} needs a tool's name; the tools are: {known}")
        switches = dict(ctx.settings.tools)
        wanted = action == "on"
        if wanted == spec.default_on:
            switches.pop(spec.name, None)
        else:
            switches[spec.name] = wanted
        await ctx.store.set_setting(ctx.chat.id, "tools", switches or None)
        return f"{spec.name} is now {action} in this chat."
    if not specs:
        return (
            "No tools: no plugin declares one and no MCP server is configured "
            "([mcp.servers.NAME] in the config)."
        )
    backend = ctx.backend
    problem = await registry.support(backend)
    offer = await registry.offer(ctx, backend)
    head = (
        f"The model ({backend.name}) can call tools; the declarations of those on take "
        f"{offer.tokens} tokens of the {backend.context_window}-token window."
        if problem is None
        else f"The model ({backend.name}) is given no tools: {problem}. The chat goes on "
        "without them."
        + (
            ""
            if registry.can_force(backend)
            else " A call can still be forced: /tool NAME question"
        )
    )
    lines = [head, "Tools:"]
    lines += [_line(s, registry.is_on(s, ctx.settings)) for s in specs]
    if registry.mcp is not None:
        lines.append("MCP servers:")
        lines += [f"  {n}: {state}" for n, state in registry.mcp.statuses().items()]
    lines.append(
        f"Up to {registry.max_rounds} rounds of calls per reply, {registry.config.timeout:g} s "
        "per call. Switch one: /tools on NAME, /tools off NAME"
    )
    return "\n".join(lines)


Question = Annotated[str, Field(min_length=1, max_length=16000)]


@plugin.command("tool", writes_ahead=True, uses_model=True)
async def tool(ctx: Context, name: ToolArg, question: Question) -> None:
    """Ask with a tool the model must call first, e.g. /tool time What day is it? (the call is
    forced: in-process, a grammar makes it valid JSON for the tool's schema)."""
    registry = ctx.services.tools
    registry.find(name, ctx.settings)
    problem = registry.can_force(ctx.backend)
    if problem is not None:
        raise CommandError(f"/tool: {problem}")
    await ctx.conversation.respond(ctx, question, tool=name)


@plugin.command("confirm", immediate=True)
async def confirm(ctx: Context) -> str:
    """Let the tool call waiting for your confirmation run."""
    return ctx.services.tools.confirmations.answer(ctx.chat.id, ctx.incoming.user.id, True)


@plugin.command("deny", immediate=True)
async def deny(ctx: Context) -> str:
    """Refuse the tool call waiting for your confirmation."""
    return ctx.services.tools.confirmations.answer(ctx.chat.id, ctx.incoming.user.id, False)


@plugin.command("time", tool=True)
async def time_now(ctx: Context, zone: Zone | None = None) -> str:
    """The date, weekday and time now, e.g. /time Europe/Paris.

    zone: an IANA time zone name (the bot's own zone if none is given). Use it for any
    question about today or now."""
    try:
        tz = ZoneInfo(zone) if zone else None
    except (ZoneInfoNotFoundError, ValueError):
        raise CommandError(
            f"/time: {zone!r} is not a time zone; use an IANA name like Europe/Paris or UTC"
        ) from None
    now = datetime.now(tz).astimezone(tz)
    return f"{now:%A %Y-%m-%d %H:%M} ({now.tzname()}, UTC{now:%z})"
