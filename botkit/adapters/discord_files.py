"""A Discord attachment (on a message, or a slash command's ATTACHMENT option) as botkit's
Attachment: its name, declared size and type, and its bytes from the signed CDN URL.

Attachment URLs are signed and expire (https://discord.com/developers/docs/reference#signed-attachment-cdn-urls):
the CDN answers 404 to an expired one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import discord

from botkit.adapters.downloads import download
from botkit.core.events import Attachment

__all__ = ["attachment"]


def attachment(item: discord.Attachment) -> Attachment:
    """item, readable from its CDN URL."""
    name, url = item.filename, item.url
    gone = f"the link to {name} has expired (Discord's file links do); send the file again"

    async def chunks() -> AsyncGenerator[bytes, None]:
        async for chunk in download(url, name, gone):
            yield chunk

    return Attachment(name, item.size, item.content_type, chunks)
