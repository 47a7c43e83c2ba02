"""Files users send to the emulated Telegram: getFile and the file download URL.

As https://core.telegram.org/bots/api#getfile: getFile takes a file_id and answers a File with
`file_path`; the bytes are then at `/file/bot<token>/<file_path>` on the API host, and the
cloud Bot API lets bots download files of up to 20 MB only (a bigger one: 400 "Bad Request:
file is too big"). An unknown file_id is 400 "Bad Request: invalid file_id" (the server's
answer to a malformed or foreign id). Tests add files with `add()`, choose how the download
misbehaves (`fault`: a 500, a body cut short of its Content-Length, a hang), and read which
files were downloaded from `downloads`.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

__all__ = ["MAX_DOWNLOAD", "FileStore", "StoredFile"]

MAX_DOWNLOAD = 20 * 1024 * 1024  # https://core.telegram.org/bots/api#getfile

Fault = Literal["500", "truncated", "hang"]


@dataclass
class StoredFile:
    """A file on the emulated server: its bytes, and what its message declares."""

    file_id: str
    unique_id: str
    data: bytes
    size: int  # the size the message and getFile declare (a test may make it lie)
    path: str
    fault: Fault | None = None

    def document(self, name: str, mime: str | None) -> dict[str, Any]:
        """A Document object (https://core.telegram.org/bots/api#document)."""
        data: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.unique_id,
                                "file_name": name, "file_size": self.size}  # fmt: skip
        if mime is not None:
            data["mime_type"] = mime
        return data

    def photo_size(self, width: int, height: int) -> dict[str, Any]:
        """A PhotoSize object (https://core.telegram.org/bots/api#photosize)."""
        return {"file_id": self.file_id, "file_unique_id": self.unique_id, "width": width,
                "height": height, "file_size": self.size}  # fmt: skip


class FileStore:
    """The emulated server's files, getFile and the download route."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._files: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._release = asyncio.Event()  # ends hung downloads when the emulator stops
        self.downloads: list[str] = []  # file_ids whose bytes were asked for, in order
        self.get_file_calls: list[str] = []

    def add(
        self,
        data: bytes,
        *,
        folder: str = "documents",
        extension: str = "bin",
        declared_size: int | None = None,
        fault: Fault | None = None,
    ) -> StoredFile:
        """Store a file; declared_size: what Telegram says its size is (default: the truth)."""
        unique = secrets.token_urlsafe(12)
        file_id = f"BQACAgIAAxkBAA{secrets.token_urlsafe(40)}"
        path = f"{folder}/file_{len(self._files)}.{extension}"
        size = len(data) if declared_size is None else declared_size
        stored = StoredFile(file_id, unique, data, size, path, fault)
        self._files[file_id] = self._by_path[path] = stored
        return stored

    def register(self, app: web.Application) -> None:
        """Add the download route to app."""
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    def stop(self) -> None:
        """Let hung downloads end, so the server can close."""
        self._release.set()

    def get_file(self, params: dict[str, Any]) -> tuple[int, Any]:
        """getFile: (0, the File) or (HTTP status, the error description)."""
        file_id = str(params.get("file_id", ""))
        self.get_file_calls.append(file_id)
        stored = self._files.get(file_id)
        if stored is None:
            return 400, "Bad Request: invalid file_id"
        if stored.size > MAX_DOWNLOAD:
            return 400, "Bad Request: file is too big"
        return 0, {"file_id": stored.file_id, "file_unique_id": stored.unique_id,
                   "file_size": stored.size, "file_path": stored.path}  # fmt: skip

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self._token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        stored = self._by_path.get(request.match_info["path"])
        if stored is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        self.downloads.append(stored.file_id)
        if stored.fault == "500":
            return web.Response(status=500, text="Internal Server Error")
        response = web.StreamResponse()
        response.content_length = len(stored.data)
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if stored.fault == "hang":
            await response.write(stored.data[: len(stored.data) // 2])
            await self._release.wait()  # never sends the rest
        elif stored.fault == "truncated":
            await response.write(stored.data[: len(stored.data) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection ends short of Content-Length
            return response
        else:
            await response.write(stored.data)
        await response.write_eof()
        return response
