"""The real discord.py Client (with a CommandTree) against the Discord emulator."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import yarl

from tests.emulators.discord import (
    ALICE_ID,
    BOT_ID,
    GENERAL_ID,
    GUILD_ID,
    DiscordEmulator,
    MessageRecord,
)

with warnings.catch_warnings():
    # discord.player imports audioop, deprecated since Python 3.11.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands

NO_PINGS = discord.AllowedMentions.none()
GUILD = discord.Object(GUILD_ID)
TIMEOUT = 10


@dataclass
class Bot:
    """A connected client and the emulator it talks to."""

    emulator: DiscordEmulator
    client: discord.Client
    tree: app_commands.CommandTree[discord.Client]

    async def replies(self, channel_id: int, count: int) -> list[MessageRecord]:
        """Wait until the bot's messages in channel_id are complete (edited once); return them."""

        def done() -> bool:
            sent = self.emulator.sent_to(channel_id)
            return len(sent) >= count and all(m.edits >= 1 for m in sent)

        async with asyncio.timeout(TIMEOUT):
            await self.emulator.wait_for(done)
        return self.emulator.sent_to(channel_id)


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    emulator = DiscordEmulator()
    await emulator.start()
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = emulator.rest_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)

    intents = discord.Intents.default()
    intents.message_content = True
    client = discord.Client(intents=intents, allowed_mentions=NO_PINGS, guild_ready_timeout=0.05)
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    ready = asyncio.Event()

    @tree.command(name="ping", description="Answer with the value")
    async def ping(
        interaction: discord.Interaction[discord.Client], value: app_commands.Range[float, 0, 2]
    ) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content=f"pong {value}")

    async def on_ready() -> None:
        ready.set()

    async def on_message(message: discord.Message) -> None:
        if message.author == client.user:
            return  # Discord echoes the bot's own messages
        sent = await message.channel.send("…", allowed_mentions=NO_PINGS)
        await sent.edit(content=f"echo: {message.content}", allowed_mentions=NO_PINGS)

    client.event(on_ready)
    client.event(on_message)
    connection: asyncio.Task[None] | None = None
    try:
        await client.login(emulator.token)
        connection = asyncio.create_task(client.connect(reconnect=True))
        async with asyncio.timeout(TIMEOUT):
            await ready.wait()
        yield Bot(emulator, client, tree)
    finally:
        await client.close()
        if connection is not None:
            await connection
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        await emulator.stop()
    assert emulator.unknown_routes == []
    assert not any(m.would_ping for m in emulator.messages)


async def test_ready_and_guild_sync(bot: Bot) -> None:
    emulator = bot.emulator
    assert emulator.identify_count == 1
    assert emulator.intents is not None
    assert emulator.intents & (1 << 15)  # message content
    guild = bot.client.get_guild(GUILD_ID)
    assert guild is not None
    assert guild.name == "Test guild"
    assert {c.name for c in guild.text_channels} == {"general", "other"}

    bot.tree.copy_global_to(guild=GUILD)
    synced = await bot.tree.sync(guild=GUILD)
    assert [c.name for c in synced] == ["ping"]
    assert emulator.sync_count == 1
    (option,) = emulator.guild_commands[GUILD_ID][0]["options"]
    assert (option["type"], option["min_value"], option["max_value"]) == (10, 0, 2)


async def test_slash_command_defers_then_edits(bot: Bot) -> None:
    bot.tree.copy_global_to(guild=GUILD)
    await bot.tree.sync(guild=GUILD)
    record = await bot.emulator.slash_command("ping", {"value": 1.5})
    assert record.payload["data"]["options"] == [{"name": "value", "type": 10, "value": 1.5}]
    async with asyncio.timeout(TIMEOUT):
        await bot.emulator.wait_for(lambda: record.original_content == "pong 1.5")
    assert record.callbacks == [5]
    assert record.original is not None
    assert not record.original.loading
    assert bot.emulator.sent_to(GENERAL_ID) == [record.original]


async def test_followups_and_the_three_second_deadline(bot: Bot) -> None:
    errors: list[int] = []
    refused = asyncio.Event()

    @bot.tree.command(name="pieces", description="Answer in pieces")
    async def pieces(interaction: discord.Interaction[discord.Client]) -> None:
        try:
            await interaction.response.defer(thinking=True)
        except discord.NotFound as error:
            errors.append(error.code)
            refused.set()
            return
        await interaction.followup.send("first piece")
        await interaction.followup.send("second piece", ephemeral=True)

    bot.tree.copy_global_to(guild=GUILD)
    await bot.tree.sync(guild=GUILD)
    bot.emulator.fail_next["followup"].append(0.05)
    record = await bot.emulator.slash_command("pieces")
    async with asyncio.timeout(TIMEOUT):
        await bot.emulator.wait_for(lambda: len(record.followups) == 1)
    assert record.original_content == "first piece"  # it fills the deferred "thinking…"
    assert [(m.content, m.ephemeral) for m in record.followups] == [("second piece", True)]
    assert bot.emulator.rate_limited == 1

    bot.emulator.callback_deadline = 0.0
    late = await bot.emulator.slash_command("pieces")
    async with asyncio.timeout(TIMEOUT):
        await refused.wait()
    assert errors == [10062]  # Unknown interaction
    assert late.callbacks == []


async def test_mention_and_dm_get_replies(bot: Bot) -> None:
    emulator = bot.emulator
    await emulator.user_message("hello", mentions_bot=True)
    (reply,) = await bot.replies(GENERAL_ID, 1)
    assert reply.content == f"echo: <@{BOT_ID}> hello"
    assert reply.allowed_mentions == {"parse": []}  # AllowedMentions.none()

    dm = emulator.dm_channel_id(ALICE_ID)
    payload = await emulator.user_message("psst", channel_id=dm)
    assert "guild_id" not in payload
    (reply,) = await bot.replies(dm, 1)
    assert reply.content == "echo: psst"


async def test_rate_limited_edit_is_retried(bot: Bot) -> None:
    bot.emulator.fail_next["edit"].append(0.05)
    await bot.emulator.user_message("slow down")
    (reply,) = await bot.replies(GENERAL_ID, 1)
    assert reply.content == "echo: slow down"
    assert reply.edits == 1
    assert bot.emulator.rate_limited == 1


async def test_dropped_gateway_resumes_and_replays(bot: Bot) -> None:
    emulator = bot.emulator
    await emulator.drop_connection()
    await emulator.user_message("while away")  # buffered, replayed on RESUME
    async with asyncio.timeout(TIMEOUT):
        await emulator.wait_for(lambda: emulator.resume_count == 1)
    (reply,) = await bot.replies(GENERAL_ID, 1)
    assert reply.content == "echo: while away"
    assert emulator.identify_count == 1


async def test_rest_answers_plain_json_and_checks_the_token() -> None:
    async with DiscordEmulator() as emulator, aiohttp.ClientSession() as session:
        good = {"Authorization": f"Bot {emulator.token}"}
        async with session.get(f"{emulator.rest_base}/users/@me", headers=good) as response:
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["id"] == str(BOT_ID)
        bad = {"Authorization": "Bot wrong"}
        async with session.get(f"{emulator.rest_base}/users/@me", headers=bad) as response:
            assert response.status == 401
        async with session.get(f"{emulator.rest_base}/nowhere", headers=good) as response:
            assert response.status == 404
        assert emulator.unknown_routes == [("GET", "/nowhere")]
