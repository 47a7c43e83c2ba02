"""Plugin commands as Discord slash commands: typed options with ranges and choices, and their
registration with Discord when the set changed.

One declaration serves every platform: each parameter's pydantic type becomes a Discord option
type (`Range[float, 0, 2]`, `Range[str, 1, 4000]`, `Literal` choices). Discord only shows the
bounds; the values are validated again by the same pydantic types when the command runs. A
command that takes a file gets an optional `file` option of type ATTACHMENT (11), last.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args, get_origin

import discord
from discord import app_commands

from botkit.core.commands import FILE_OPTION, Command, Param, constraints

__all__ = ["SlashHandler", "command_signature", "slash_command", "sync_commands"]

log = logging.getLogger(__name__)

SlashHandler = Callable[[discord.Interaction[Any], Command, dict[str, Any]], Awaitable[None]]

_DESCRIPTION = 100  # Discord's limit for command and option descriptions
_STRING_MAX = 6000  # Discord's limit for a string option


def _option_type(param: Param) -> Any:
    c = constraints(param.annotation)
    base = c.base
    if get_origin(base) is Literal and all(isinstance(v, str | int) for v in get_args(base)):
        return base  # discord.py turns a Literal into choices
    if base is bool:
        return bool
    if base in (int, float):
        low = c.ge if c.ge is not None else c.gt
        high = c.le if c.le is not None else c.lt
        if low is None and high is None:
            return base
        return app_commands.Range[base, low, high]
    if base is str:
        high = min(c.max_length or _STRING_MAX, _STRING_MAX)
        return app_commands.Range[str, c.min_length or 1, high]
    return str  # unions (e.g. "a number or random") arrive as text and are parsed by pydantic


def _first_line(text: str, fallback: str) -> str:
    line = (text.strip().splitlines() or [fallback])[0].strip() or fallback
    return line if len(line) <= _DESCRIPTION else line[: _DESCRIPTION - 1] + "…"


def slash_command(command: Command, handler: SlashHandler) -> app_commands.Command[Any, Any, Any]:
    """The app command for a plugin command; invoking it calls handler with the raw values."""

    async def callback(interaction: discord.Interaction[Any], /, **values: Any) -> None:
        await handler(interaction, command, values)

    parameters = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=discord.Interaction),
        *(
            inspect.Parameter(
                p.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_option_type(p),
                default=inspect.Parameter.empty if p.required else None,
            )
            for p in command.params
        ),
    ]  # fmt: skip
    descriptions = {
        p.name: _first_line(f"{p.allowed[:1].upper()}{p.allowed[1:]}", p.name)
        for p in command.params
    }
    if command.takes_file:
        # Optional, so it comes after every required option as Discord demands.
        file = inspect.Parameter(FILE_OPTION, inspect.Parameter.KEYWORD_ONLY,
                                 annotation=discord.Attachment | None, default=None)  # fmt: skip
        parameters.append(file)
        descriptions[FILE_OPTION] = "A file for the command"
    # discord.py reads the options from the callback's signature.
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__name__ = callback.__qualname__ = command.name
    callback.__discord_app_commands_param_description__ = descriptions  # type: ignore[attr-defined]
    return app_commands.Command(
        name=command.name, description=_first_line(command.help, command.name), callback=callback
    )


def command_signature(payload: Any) -> tuple[Any, ...]:
    """What Discord stores of a command, for comparing local and registered sets."""

    def option(o: dict[str, Any]) -> tuple[Any, ...]:
        choices = tuple(sorted(str(c["value"]) for c in o.get("choices") or []))
        keys = ("min_value", "max_value", "min_length", "max_length")
        return (o["name"], o["type"], bool(o.get("required")), o.get("description", ""),
                *(o.get(k) for k in keys), choices)  # fmt: skip

    options = tuple(sorted(option(o) for o in payload.get("options") or []))
    return (payload["name"], payload.get("description", ""), options)


async def sync_commands(tree: app_commands.CommandTree[Any], guild_ids: list[int]) -> bool:
    """Register the slash commands in these guilds (globally when none) where they differ from
    what Discord has; whether any were registered."""
    synced = False
    targets: list[discord.Object | None] = [discord.Object(g) for g in guild_ids]
    for guild in targets or [None]:
        if guild is not None:
            tree.copy_global_to(guild=guild)
        local = sorted(command_signature(c.to_dict(tree)) for c in tree.get_commands(guild=guild))
        remote = sorted(
            command_signature(c.to_dict()) for c in await tree.fetch_commands(guild=guild)
        )
        if local != remote:
            await tree.sync(guild=guild)
            synced = True
            log.info("discord: synced %d slash commands (%s)", len(local),
                     f"guild {guild.id}" if guild else "global")  # fmt: skip
    return synced
