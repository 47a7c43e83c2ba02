"""Downloading a file a user sent from the platform's file URL, in chunks.

Not the libraries' own downloads (PTB's `File.download_as_bytearray`, discord.py's
`Attachment.read`): both read the whole body into memory, and a body longer than the platform
declared must stop at the reader's limit (`Attachment.read`). httpx streams it instead. Errors
become AttachmentError texts fit for the user: they never carry the URL, which holds the
Telegram bot token or a Discord signature.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx

from botkit.core.events import AttachmentError

__all__ = ["download"]

_CONNECT_TIMEOUT = 10.0  # the whole download is bounded by Attachment.read's timeout


async def download(url: str, name: str, gone: str | None = None) -> AsyncGenerator[bytes, None]:
    """The body of url in chunks; AttachmentError for an answer other than 200 (gone: the
    text for a 404, e.g. an expired link) or a broken transfer."""
    timeout = httpx.Timeout(None, connect=_CONNECT_TIMEOUT)
    try:
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code == 404 and gone is not None:
                raise AttachmentError(gone)
            if response.status_code != 200:
                raise AttachmentError(
                    f"the platform answered HTTP {response.status_code} when asked for {name}; "
                    f"send it again later"
                )
            async for chunk in response.aiter_bytes():
                yield chunk
    except httpx.HTTPError as exc:
        # e.g. RemoteProtocolError: the body ended before its Content-Length.
        raise AttachmentError(
            f"the download of {name} broke off ({type(exc).__name__}); send it again"
        ) from None
