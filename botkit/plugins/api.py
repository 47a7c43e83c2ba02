"""The plugin API: everything a plugin may import, and all it may rely on.

    from botkit.plugins.api import CommandError, Plugin, PluginContext

    plugin = Plugin("dice", help="Dice rolls")

    @plugin.command("roll")
    async def roll(ctx: PluginContext, spec: Annotated[str, Field(pattern=r"^\\d+d\\d+$")] = "1d6"):
        \"\"\"Roll dice, e.g. /roll 2d6.\"\"\"  # the docstring is the help
        ...
        return "🎲 …"  # a returned string is the reply

A handler's parameters after ctx are the command's arguments, validated by pydantic from their
annotations (ranges, lengths, patterns) before it runs; a bad one gets a reply saying what is
allowed. `uses_model=True` counts the command against the user's rate limit; `takes_file=True`
lets it take files sent with it (`ctx.attachments`, each read by `await a.read(limit)`, which
raises AttachmentError, a CommandError, for a file too big, gone or not delivered). The
context offers replies, the chat's settings and history, generation with the chat's model,
and key-value stores with atomic updates, per chat (`ctx.data`) and the plugin's own
(`ctx.store`), kept under the name the plugin was loaded as (see PluginContext). Examples:
botkit/plugins/examples/.
"""

from __future__ import annotations

from botkit.core.commands import CommandError, Plugin
from botkit.core.events import Attachment, AttachmentError
from botkit.core.plugin_context import HistoryMessage, PluginContext, PluginStore, PluginStoreFull
from botkit.core.settings import ChatSettings

__all__ = [
    "Attachment",
    "AttachmentError",
    "ChatSettings",
    "CommandError",
    "HistoryMessage",
    "Plugin",
    "PluginContext",
    "PluginStore",
    "PluginStoreFull",
]
