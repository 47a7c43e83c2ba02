"""/image PATH [question]: a picture from the bot's own machine, for the console (Telegram and
Discord users send pictures as they are; the console has no attachments). The picture goes
the way a platform's does: checked and re-encoded, stored with the message, seen by a model
that can, described for one that cannot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from pydantic import Field

from botkit.core.commands import CommandError, Plugin
from botkit.core.context import Context
from botkit.images.decode import prepare

__all__ = ["plugin"]

plugin = Plugin("pictures", help="Pictures", internal=True)

# A Path, not text: one word, so that the rest of the line is the question.
ImagePath = Annotated[Path, Field(description="a file's path, without spaces")]
Question = Annotated[str, Field(max_length=16000)]


def _read(path: Path, limit: int) -> tuple[str, bytes]:
    """The file's name and bytes, refused over limit before it is read."""
    file = path.expanduser()
    try:
        size = file.stat().st_size
        if size > limit:
            raise CommandError(
                f"/image: {file.name} is {size / 1048576:.1f} MB; pictures of up to "
                f"{limit / 1048576:.1f} MB are accepted"
            )
        return file.name, file.read_bytes()
    except OSError as exc:
        raise CommandError(f"/image: cannot read {file}: {exc.strerror or exc}") from None


@plugin.command("image", writes_ahead=True, uses_model=True)
async def image(ctx: Context, path: ImagePath, question: Question = "") -> None:
    """Send a picture from this machine with a question, e.g. /image ~/cat.jpg What breed?
    (console only)."""
    if ctx.incoming.chat.platform != "console":
        raise CommandError(
            "/image reads a file on the bot's machine, so it works in the console only; here, "
            "send the picture itself with your question as its caption"
        )
    sight = ctx.services.sight
    name, data = await asyncio.to_thread(_read, path, sight.config.max_bytes)
    picture, seconds = await prepare(data, sight.config, name=name)
    seen = await sight.route(ctx.backend, [picture], str(ctx.chat.key), seconds)
    await ctx.conversation.respond(ctx, question, seen=seen)
