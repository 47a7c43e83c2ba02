"""An example plugin that uses the model: /summarize the chat so far in three lines.

It reads the history the model sees, and asks the chat's own model through the plugin API, so
the request is rate-limited and waits for its turn like any reply; nothing is added to the
history.
"""

from __future__ import annotations

from botkit.plugins.api import Plugin, PluginContext

plugin = Plugin("summarize", help="Summaries of the conversation")

_TRANSCRIPT_CHARS = 6000  # the newest part of a long chat, so the request fits small windows
_INSTRUCTION = "Summarize this conversation in three short lines, one point per line."


@plugin.command("summarize", uses_model=True)
async def summarize(ctx: PluginContext) -> str:
    """The conversation so far, in three lines."""
    history = [m for m in await ctx.history() if m.text]
    if not history:
        return "Nothing to summarize yet: this chat has no history."
    lines = [f"{m.author or ('Assistant' if m.role == 'assistant' else 'User')}: {m.text}"
             for m in history]  # fmt: skip
    transcript = "\n".join(lines)[-_TRANSCRIPT_CHARS:]
    summary = await ctx.generate(
        f"{_INSTRUCTION}\n\n{transcript}",
        persona="You write short, factual summaries.",
        max_tokens=min(120, ctx.settings.max_tokens),
    )
    return summary.strip() or "(the model returned an empty summary)"
