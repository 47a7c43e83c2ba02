"""A plugin whose command takes a file, for the adapters' tests: /peek replies with the file's
name, size and first line, the way a user would check that the file arrived whole."""

from __future__ import annotations

from botkit.plugins.api import CommandError, Plugin, PluginContext

LIMIT = 64 * 1024  # the most /peek reads


def file_plugin(timeout: float = 30.0) -> Plugin:
    """The plugin, its downloads bounded by timeout seconds."""
    plugin = Plugin("files", help="Files sent with a command")

    @plugin.command("peek", takes_file=True)
    async def peek(ctx: PluginContext) -> str:
        """Show a file's name, size and first line."""
        if not ctx.attachments:
            raise CommandError("/peek needs a file: send one with /peek as its caption")
        file = ctx.attachments[0]
        data = await file.read(LIMIT, timeout=timeout)
        first = data.decode(errors="replace").splitlines()[0] if data else ""
        return f"{file.name} ({file.mime}): {len(data)} bytes; first line: {first}"

    return plugin
