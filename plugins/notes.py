"""Your own plugin, worked example: notes kept per chat (/note, /notes, /unnote).

This folder (config [plugins] paths) holds your plugins: one NAME.py each, enabled by listing
NAME in config [plugins] enabled. Like any plugin it may import only `botkit.plugins.api`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from botkit.plugins.api import CommandError, Plugin, PluginContext

plugin = Plugin("notes", help="Notes kept in this chat")

MAX_NOTES = 20
# 20 notes of 200 characters stay under the store's 64 KiB a value even when every character
# is an emoji (12 bytes of escaped JSON each).
NoteText = Annotated[str, Field(min_length=1, max_length=200)]
NoteNumber = Annotated[int, Field(ge=1, le=MAX_NOTES, description="as /notes numbers it")]


def _key(ctx: PluginContext) -> str:
    return f"notes:{ctx.chat_id}"  # per chat: the store's keys are the plugin's, not the chat's


async def _load(ctx: PluginContext) -> list[str]:
    return list(await ctx.store.get(_key(ctx), []))


@plugin.command("note")
async def note(ctx: PluginContext, text: NoteText) -> str:
    """Keep a note in this chat, e.g. /note buy oat milk (up to 200 characters)."""
    notes = await _load(ctx)
    if len(notes) >= MAX_NOTES:
        raise CommandError(f"this chat has {MAX_NOTES} notes, the most it keeps; /unnote N first")
    notes.append(text)
    await ctx.store.set(_key(ctx), notes)
    return f"📝 noted (#{len(notes)}); /notes lists them"


@plugin.command("notes")
async def notes(ctx: PluginContext) -> str:
    """This chat's notes, numbered."""
    kept = await _load(ctx)
    if not kept:
        return "No notes in this chat yet: /note TEXT keeps one."
    return "\n".join(f"{number}. {text}" for number, text in enumerate(kept, 1))


@plugin.command("unnote")
async def unnote(ctx: PluginContext, number: NoteNumber) -> str:
    """Delete note N (as /notes numbers it)."""
    kept = await _load(ctx)
    if number > len(kept):
        have = f"{len(kept)} note{'' if len(kept) == 1 else 's'}"
        raise CommandError(f"/unnote {number}: this chat has {have}; /notes lists them")
    removed = kept.pop(number - 1)
    await ctx.store.set(_key(ctx), kept or None)  # None deletes the key
    return f"🗑 deleted #{number}: {removed}"
