"""Files users attach, as Discord's CDN serves them: signed URLs that expire.

As https://discord.com/developers/docs/reference#signed-attachment-cdn-urls: an attachment's
`url` and `proxy_url` carry `ex` (when it expires, unix seconds in hex), `is` (when it was
issued, the same) and `hm` (a signature over the path and both times); the CDN answers 404
"This content is no longer available." to a URL that lacks them, was altered, or expired.
Attachment objects as https://discord.com/developers/docs/resources/message#attachment-object
(id, filename, size, url, proxy_url, content_type; width and height for images).

Tests add files with `add()` (the attachment object to put in a message or a slash command's
ATTACHMENT option), make the download misbehave (`fault`: a 500, a body cut short of its
Content-Length, a hang) and read what was downloaded from `downloads`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from aiohttp import web

from tests.emulators.discord.constants import JSON
from tests.emulators.discord.state import EmulatorState

__all__ = ["Cdn", "CdnFile"]

Fault = Literal["500", "truncated", "hang"]
_GONE = "This content is no longer available."
_LIFETIME = 24 * 3600  # Discord's links last about a day


@dataclass
class CdnFile:
    """A file on the emulated CDN."""

    id: int
    data: bytes
    fault: Fault | None


class Cdn:
    """The attachments' bytes, behind signed URLs."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._key = secrets.token_bytes(32)
        self._files: dict[int, CdnFile] = {}
        self._release = asyncio.Event()  # ends hung downloads when the emulator stops
        self.base = ""  # http://127.0.0.1:PORT, set when the emulator listens
        self.downloads: list[int] = []  # attachment ids whose bytes were served

    def register(self, app: web.Application) -> None:
        """Add the CDN route to app."""
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve)

    def stop(self) -> None:
        """Let hung downloads end, so the server can close."""
        self._release.set()

    def add(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = "text/plain",
        *,
        channel_id: int = 0,
        declared_size: int | None = None,
        lifetime: float = _LIFETIME,
        fault: Fault | None = None,
        image: tuple[int, int] | None = None,
    ) -> JSON:
        """Store a file; its attachment object, whose URL expires after lifetime seconds
        (negative: already expired). declared_size: the size Discord states (default: true)."""
        attachment_id = self._state.snowflake()
        self._files[attachment_id] = CdnFile(attachment_id, data, fault)
        url = self._signed(f"/attachments/{channel_id}/{attachment_id}/", filename, lifetime)
        attachment: JSON = {
            "id": str(attachment_id), "filename": filename,
            "size": len(data) if declared_size is None else declared_size,
            "url": url, "proxy_url": url,
        }  # fmt: skip
        if content_type is not None:
            attachment["content_type"] = content_type
        if image is not None:
            attachment["width"], attachment["height"] = image
        return attachment

    def _signature(self, path: str, expires: str, issued: str) -> str:
        message = f"{path}|{expires}|{issued}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _signed(self, folder: str, filename: str, lifetime: float) -> str:
        now = int(time.time())
        expires, issued = f"{int(now + lifetime):x}", f"{now:x}"
        signature = self._signature(folder + filename, expires, issued)
        query = urlencode({"ex": expires, "is": issued, "hm": signature})
        return f"{self.base}{folder}{quote(filename)}?{query}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        expires, issued, signature = query.get("ex"), query.get("is"), query.get("hm")
        if expires is None or issued is None or signature is None:
            return web.Response(status=404, text=_GONE)
        expected = self._signature(request.path, expires, issued)
        if not hmac.compare_digest(signature, expected) or int(expires, 16) < time.time():
            return web.Response(status=404, text=_GONE)
        stored = self._files.get(int(request.match_info["attachment_id"]))
        if stored is None:
            return web.Response(status=404, text=_GONE)
        self.downloads.append(stored.id)
        await self._state.notify()
        if stored.fault == "500":
            return web.Response(status=500, text="Internal Server Error")
        response = web.StreamResponse()
        response.content_length = len(stored.data)
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if stored.fault is not None:
            await response.write(stored.data[: len(stored.data) // 2])
            if stored.fault == "hang":
                await self._release.wait()  # never sends the rest
            assert request.transport is not None
            request.transport.close()  # the connection ends short of Content-Length
            return response
        await response.write(stored.data)
        await response.write_eof()
        return response
