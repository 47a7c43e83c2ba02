"""Files users send on Discord reach a command that takes one: real discord.py against the
Discord emulator, as message attachments and as a slash command's ATTACHMENT option, from the
emulated CDN's signed URLs, with its refusals and faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from botkit.adapters.discord import DiscordAdapter
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from tests.conftest import MakeConfig
from tests.emulators.discord import GUILD_ID, DiscordEmulator, MessageRecord
from tests.emulators.discord.constants import ADMIN_ID, JSON
from tests.file_plugin import LIMIT, file_plugin
from tests.handled import HandledLog
from tests.harness import stop_all

TEXT = b"first line of the notes\nsecond line\n"
NOTES = "notes.txt (text/plain): 36 bytes; first line: first line of the notes"


@dataclass
class Harness:
    """A bot with the /peek plugin on the emulated Discord."""

    emulator: DiscordEmulator
    adapter: DiscordAdapter
    bot: Bot
    log: HandledLog

    async def slash(self, file: JSON | None, name: str = "peek") -> str:
        """Run /name with file as its ATTACHMENT option; the reply's text (an error is an
        ephemeral follow-up, the original response deleted)."""
        options = {"file": file} if file is not None else {}
        record = await self.emulator.slash_command(name, options)
        async with asyncio.timeout(60):
            await self.log.wait(record.id)
        (shown,) = [m for m in [record.original, *record.followups] if m and not m.deleted]
        assert shown.ephemeral == shown.content.startswith("⚠")
        return shown.content

    async def dm(self, text: str, *files: JSON) -> list[MessageRecord]:
        channel = self.emulator.dm_channel_id(700000000000000001)
        before = len(self.emulator.sent_to(channel))
        payload = await self.emulator.user_message(
            text, channel_id=channel, author_id=700000000000000001, attachments=list(files)
        )
        async with asyncio.timeout(60):
            await self.log.wait(payload["id"])
        return self.emulator.sent_to(channel)[before:]


@pytest.fixture
async def discord_bot(make_config: MakeConfig) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    running: list[tuple[Harness, asyncio.Task[None]]] = []
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY

    async def start(read_timeout: float = 30.0) -> Harness:
        emulator = DiscordEmulator()
        await emulator.start()
        config = make_config(
            discord={"enabled": True, "api_base_url": emulator.rest_base,
                     "gateway_url": emulator.gateway_url, "guild_ids": [GUILD_ID],
                     "guild_ready_timeout": 0.05},
        )  # fmt: skip
        bot = build_bot(config, backends={"local": ScriptedBackend("local")})
        bot.registry.add_plugin(file_plugin(read_timeout))
        await bot.start()
        adapter = DiscordAdapter(
            config.discord, emulator.token, bot.registry,
            store=bot.repo, mark_interval=config.service.heartbeat_interval,
        )  # fmt: skip
        log = HandledLog()
        adapter.on_handled = log.add
        task = asyncio.create_task(adapter.start(bot.router))
        async with asyncio.timeout(30):
            await adapter.ready.wait()
        harness = Harness(emulator, adapter, bot, log)
        running.append((harness, task))
        return harness

    yield start
    await stop_all(running)
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
    assert all(not h.emulator.unknown_routes for h, _ in running)


async def test_a_command_that_takes_a_file_has_an_attachment_option(discord_bot: Any) -> None:
    dc = await discord_bot()
    commands = {c["name"]: c for c in dc.emulator.guild_commands[GUILD_ID]}
    (option,) = commands["peek"]["options"]
    assert (option["name"], option["type"], option.get("required", False)) == ("file", 11, False)
    assert "options" not in commands["temp"] or all(
        o["type"] != 11 for o in commands["temp"]["options"]
    )


async def test_a_slash_commands_file_reaches_it(discord_bot: Any) -> None:
    dc = await discord_bot()
    notes = dc.emulator.cdn.add(TEXT, "notes.txt")
    assert await dc.slash(notes) == NOTES
    assert dc.emulator.cdn.downloads == [int(notes["id"])]
    assert await dc.slash(None) == "⚠ /peek needs a file: send one with /peek as its caption"


async def test_a_messages_attachment_reaches_the_command(discord_bot: Any) -> None:
    dc = await discord_bot()
    (reply,) = await dc.dm("/peek", dc.emulator.cdn.add(TEXT, "notes.txt"))
    assert reply.content == NOTES
    (refused,) = await dc.dm("/temp 0.5", dc.emulator.cdn.add(TEXT, "notes.txt"))
    assert refused.content == (
        "⚠ /temp takes no file; send the command without one. /help lists the commands"
    )


async def test_a_file_over_the_limit_is_refused_without_downloading(discord_bot: Any) -> None:
    dc = await discord_bot()
    big = dc.emulator.cdn.add(b"x" * 10, "big.log", declared_size=LIMIT + 1)
    assert await dc.slash(big) == (
        "⚠ big.log is 65,537 bytes; files up to 65,536 bytes are accepted"
    )
    assert dc.emulator.cdn.downloads == []


async def test_an_expired_link_gets_a_clear_reply(discord_bot: Any) -> None:
    dc = await discord_bot()
    old = dc.emulator.cdn.add(TEXT, "notes.txt", lifetime=-60)
    assert await dc.slash(old) == (
        "⚠ the link to notes.txt has expired (Discord's file links do); send the file again"
    )
    assert dc.emulator.cdn.downloads == []  # the CDN served nothing
    assert await dc.slash(dc.emulator.cdn.add(TEXT, "notes.txt")) == NOTES


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("500", "⚠ the platform answered HTTP 500 when asked for notes.txt; send it again later"),
        ("truncated", "⚠ the download of notes.txt broke off (RemoteProtocolError); send it again"),
        ("hang", "⚠ downloading notes.txt took over 0.5 s and was stopped; send it again later"),
    ],
)
async def test_a_failed_download_gets_a_clear_reply_and_the_bot_goes_on(
    discord_bot: Any, fault: Any, expected: str
) -> None:
    dc = await discord_bot(read_timeout=0.5)
    broken = dc.emulator.cdn.add(TEXT * 100, "notes.txt", fault=fault)
    assert await dc.slash(broken) == expected
    assert dc.emulator.cdn.downloads == [int(broken["id"])]
    assert await dc.slash(dc.emulator.cdn.add(TEXT, "notes.txt")) == NOTES


async def test_docs_add_through_a_slash_commands_file_option(discord_bot: Any) -> None:
    dc = await discord_bot()
    manual = dc.emulator.cdn.add(b"The boiler pressure must stay between 1.0 and 1.5 bar.\n",
                                 "boiler.txt")  # fmt: skip
    # In a guild, documents are settings: an admin adds them; Alice may not.
    denied = await dc.emulator.slash_command("docs", {"action": "add", "file": manual})
    async with asyncio.timeout(60):
        await dc.log.wait(denied.id)
    assert "only people allowed" in denied.followups[-1].content
    record = await dc.emulator.slash_command(
        "docs", {"action": "add", "file": manual}, user_id=ADMIN_ID
    )
    async with asyncio.timeout(60):
        await dc.log.wait(record.id)
    assert record.original is not None
    shown = [m for m in [record.original, *record.followups] if m and not m.deleted]
    assert shown[0].content.startswith("Added boiler.txt: 1 chunks,"), shown[0].content
    listing = await dc.slash(None, name="docs")  # the same channel's documents
    assert "  1. boiler.txt — txt," in listing
    (elsewhere,) = await dc.dm("/docs")  # a DM is another chat
    assert elsewhere.content.startswith("No documents in this chat.")


def _gif(frames: list[tuple[int, int, int]]) -> bytes:
    """An animated GIF of 32×24 frames, one colour each."""
    import io

    from PIL import Image as PILImage

    images = [PILImage.new("RGB", (32, 24), colour) for colour in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return out.getvalue()


async def test_a_picture_in_a_dm_goes_to_a_model_that_sees_it(discord_bot: Any) -> None:
    dc = await discord_bot()
    backend = dc.bot.backends["local"]
    assert isinstance(backend, ScriptedBackend)
    backend.vision_unsupported = None
    backend.enqueue("A red frame.")
    gif = dc.emulator.cdn.add(_gif([(255, 0, 0), (0, 255, 0)]), "anim.gif")
    (reply,) = await dc.dm("What colour is it?", gif)
    assert reply.content == "A red frame."
    sent = backend.prompts[-1][-1]
    assert sent["content"] == "What colour is it?"
    (image,) = sent["images"]
    assert (image.width, image.height, image.mime) == (32, 24, "image/png")  # its first frame
    assert dc.emulator.cdn.downloads == [int(gif["id"])]


async def test_a_picture_for_a_model_that_cannot_see_gets_a_clear_reply(
    discord_bot: Any,
) -> None:
    dc = await discord_bot()
    (reply,) = await dc.dm("What is it?", dc.emulator.cdn.add(_gif([(1, 2, 3)]), "a.gif"))
    assert "this chat's model cannot see images" in reply.content
