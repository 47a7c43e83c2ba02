"""The emulator is as strict as Discord: signed CDN URLs that expire, and registered command
options checked as Discord checks them."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.emulators.discord import APPLICATION_ID, DiscordEmulator

GONE = "This content is no longer available."


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def test_a_cdn_url_serves_only_while_signed_and_unexpired() -> None:
    async with DiscordEmulator() as emulator, aiohttp.ClientSession() as session:
        url = str(emulator.cdn.add(b"hello", "a b.txt")["url"])
        assert await _get(session, url) == (200, b"hello")
        bare = url.split("?", 1)[0]
        assert await _get(session, bare) == (404, GONE.encode())
        tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        assert await _get(session, tampered) == (404, GONE.encode())
        ex = url.split("ex=", 1)[1].split("&", 1)[0]
        extended = url.replace(f"ex={ex}", f"ex={int(ex, 16) + 3600:x}")
        assert await _get(session, extended) == (404, GONE.encode())  # the signature covers ex
        expired = str(emulator.cdn.add(b"old", "old.txt", lifetime=-1)["url"])
        assert await _get(session, expired) == (404, GONE.encode())
        assert len(emulator.cdn.downloads) == 1


async def _put(emulator: DiscordEmulator, options: list[dict[str, Any]]) -> tuple[int, Any]:
    command = {"name": "docs", "description": "Documents", "type": 1, "options": options}
    headers = {"Authorization": f"Bot {emulator.token}"}
    url = f"{emulator.rest_base}/applications/{APPLICATION_ID}/commands"
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, json=[command], headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_command_options_are_checked_as_discord_does() -> None:
    async with DiscordEmulator() as emulator:
        file = {"name": "file", "description": "A file", "type": 11}
        text = {"name": "text", "description": "Text", "type": 3, "required": True}
        status, body = await _put(emulator, [file, text])
        assert (status, body["code"]) == (400, 50035)
        assert body["errors"]["0"]["options"]["1"]["_errors"][0]["message"] == (
            "Required options must be placed before non-required options"
        )
        bounded = {**file, "min_value": 1}
        status, body = await _put(emulator, [bounded])
        assert "min_value" in body["errors"]["0"]["options"]["0"]
        status, body = await _put(emulator, [{**file, "type": 12}])
        assert (status, list(body["errors"]["0"]["options"]["0"])) == (400, ["type"])
        status, body = await _put(emulator, [text, file])
        assert status == 200
        assert [o["type"] for o in body[0]["options"]] == [3, 11]
