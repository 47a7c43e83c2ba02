"""The Discord adapter: real discord.py against the local Discord emulator, the real model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from botkit.adapters.discord import DiscordAdapter
from botkit.backends.base import BackendUnavailable, Chunk, GenerationParams, Message, Role
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.events import ChatKey
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage
from botkit.tools.spec import ToolChoice, ToolSpec
from tests.conftest import MakeConfig
from tests.emulators.discord import (
    ADMIN_ID,
    ADMINS_ROLE_ID,
    ALICE_ID,
    BOT_ID,
    GENERAL_ID,
    GUILD_ID,
    THREAD_ID,
    DiscordEmulator,
    InteractionRecord,
    MessageRecord,
)
from tests.gated import GatedBackend
from tests.handled import HandledLog
from tests.harness import crash, debug_log, stop_all


@dataclass
class Harness:
    """A bot connected to the emulated Discord."""

    emulator: DiscordEmulator
    adapter: DiscordAdapter
    bot: Bot
    log: HandledLog

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(60):
            await self.emulator.wait_for(predicate)

    async def handled(self, event_id: str) -> None:
        async with asyncio.timeout(60):
            await self.log.wait(event_id)

    async def slash(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> InteractionRecord:
        record = await self.emulator.slash_command(name, options, **kw)
        await self.handled(record.id)
        return record

    async def mention(
        self, text: str, channel_id: int = GENERAL_ID, **kw: Any
    ) -> list[MessageRecord]:
        payload = await self.emulator.user_message(
            text, channel_id=channel_id, mentions_bot=True, **kw
        )
        await self.handled(str(payload["id"]))
        return self.emulator.sent_to(channel_id)

    async def dm(self, text: str, user_id: int = ALICE_ID) -> list[MessageRecord]:
        channel = self.emulator.dm_channel_id(user_id)
        payload = await self.emulator.user_message(text, channel_id=channel, author_id=user_id)
        await self.handled(str(payload["id"]))
        return self.emulator.sent_to(channel)


StartHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def discord_bot(make_config: MakeConfig) -> AsyncIterator[StartHarness]:
    running: list[tuple[Harness, asyncio.Task[None]]] = []
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY

    async def start(
        backend: ScriptedBackend | None = None, emulator: DiscordEmulator | None = None, **cfg: Any
    ) -> Harness:
        if emulator is None:
            emulator = DiscordEmulator()
            await emulator.start()
        config = make_config(
            discord={"enabled": True, "api_base_url": emulator.rest_base,
                     "gateway_url": emulator.gateway_url, "guild_ids": [GUILD_ID],
                     "guild_ready_timeout": 0.05, **cfg},
        )  # fmt: skip
        bot = build_bot(config, backends={"local": backend} if backend else None)
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


async def test_slash_commands_are_synced_with_typed_options_once(
    discord_bot: StartHarness,
) -> None:
    first = await discord_bot(ScriptedBackend("local"))
    commands = {c["name"]: c for c in first.emulator.guild_commands[GUILD_ID]}
    assert {"ask", "temp", "persona", "seed", "context", "model", "help", "probs"} <= set(commands)
    (value,) = commands["temp"]["options"]
    assert (value["type"], value["min_value"], value["max_value"]) == (10, 0.0, 2.0)
    assert value["required"] is False
    assert commands["ask"]["options"][0]["type"] == 3
    assert first.emulator.sync_count == 1
    await first.adapter.stop()
    # A restart with the same commands does not sync again.
    again = await discord_bot(ScriptedBackend("local"), emulator=first.emulator)
    assert again.emulator.sync_count == 1


async def test_slash_ask_is_deferred_then_answered(discord_bot: StartHarness) -> None:
    dc = await discord_bot()
    record = await dc.slash("ask", {"question": "What is the capital of France?"})
    assert record.callbacks == [5]  # deferred within Discord's 3 seconds
    assert record.original_content
    assert not record.original_content.startswith("⚠")
    chat = await dc.bot.repo.chat(ChatKey("discord", f"{BOT_ID}/{GENERAL_ID}"))
    rows = await dc.bot.repo.window(chat.id, 0)
    assert [r.role for r in rows] == ["user", "assistant"]
    assert rows[0].author == "Alice"


async def test_a_bad_value_gets_an_ephemeral_error(discord_bot: StartHarness) -> None:
    dc = await discord_bot(ScriptedBackend("local"))
    record = await dc.slash("temp", {"value": 5}, user_id=ADMIN_ID)
    (error,) = [m for m in record.followups if m.ephemeral]
    assert error.content.startswith("⚠ /temp: '5.0' is not a valid value")
    assert "Allowed: a number from 0.0 up to 2.0" in error.content
    ok = await dc.slash("temp", {"value": 0.4}, user_id=ADMIN_ID)
    assert ok.original_content == "temperature set to 0.4 (was 0.7)"


async def test_only_managers_change_guild_settings_everyone_in_dms(
    discord_bot: StartHarness,
) -> None:
    dc = await discord_bot(ScriptedBackend("local"))
    denied = await dc.slash("temp", {"value": 0.2}, user_id=ALICE_ID)
    assert "only people allowed" in denied.followups[-1].content
    shown = await dc.slash("temp", user_id=ALICE_ID)
    assert shown.original_content == "temperature is 0.7 (default 0.7)"
    in_dm = await dc.slash("temp", {"value": 0.2}, channel_id=dc.emulator.dm_channel_id(ALICE_ID))
    assert in_dm.original_content == "temperature set to 0.2 (was 0.7)"


async def test_a_mention_and_a_dm_get_streamed_answers_in_their_own_chats(
    discord_bot: StartHarness,
) -> None:
    dc = await discord_bot()
    in_channel = await dc.mention("Say hello to the channel.")
    assert in_channel
    assert in_channel[0].reference is not None  # it answers the message that asked
    in_dm = await dc.dm("Say hello to me.")
    assert in_dm
    assert GENERAL_ID in dc.emulator.typing
    for key in (str(GENERAL_ID), str(dc.emulator.dm_channel_id(ALICE_ID))):
        chat = await dc.bot.repo.chat(ChatKey("discord", f"{BOT_ID}/{key}"))
        assert len(await dc.bot.repo.window(chat.id, 0)) == 2
    ignored = await dc.emulator.user_message("just chatting, not for the bot")
    await dc.handled(str(ignored["id"]))
    assert len(dc.emulator.sent_to(GENERAL_ID)) == len(in_channel)  # not answered


async def test_a_thread_is_its_own_conversation(discord_bot: StartHarness) -> None:
    backend = ScriptedBackend("local")
    dc = await discord_bot(backend)
    await dc.mention("in the channel")
    await dc.mention("in the thread", channel_id=THREAD_ID)
    assert backend.prompts[1][-1]["content"] == "Alice: in the thread"
    assert len(backend.prompts[1]) == 2  # persona + the thread's message: no channel history


async def test_a_5000_character_answer_is_three_messages_with_fences_intact(
    discord_bot: StartHarness,
) -> None:
    code = "\n".join(f"print('line {i:03d} of the program')" for i in range(120))
    text = "Here is the program:\n```python\n" + code + "\n```\nThat is all."
    assert 4000 < len(text) <= 6000
    backend = ScriptedBackend("local", context_window=8192)
    backend.enqueue(text)
    dc = await discord_bot(backend)
    sent = await dc.mention("Write a long program.")
    assert len(sent) == 3
    assert all(len(m.content) <= 2000 for m in sent)
    for message in sent:
        assert message.content.count("```") % 2 == 0
    joined = "".join(m.content for m in sent).replace("```python\n", "").replace("```", "")
    assert joined.split() == text.replace("```python\n", "").replace("```", "").split()


async def test_a_429_on_an_edit_is_retried_and_nothing_is_lost(discord_bot: StartHarness) -> None:
    backend = ScriptedBackend("local")
    text = "Every word of this answer must arrive, even when Discord says slow down. " * 4
    backend.enqueue(text)
    dc = await discord_bot(backend)
    dc.emulator.fail_next["edit"].append(0.3)
    sent = await dc.mention("Go.")
    assert dc.emulator.rate_limited == 1
    assert sent[0].content == text


async def test_model_output_never_pings(discord_bot: StartHarness) -> None:
    backend = ScriptedBackend("local")
    backend.enqueue(f"@everyone look! @here <@{ADMIN_ID}> <@&{GUILD_ID}>")
    dc = await discord_bot(backend)
    sent = await dc.mention("Ping everybody.")
    assert "@everyone" in sent[0].content
    assert not any(m.would_ping for m in dc.emulator.messages)


async def test_a_dropped_gateway_resumes_and_the_reply_completes(
    discord_bot: StartHarness,
) -> None:
    real = await discord_bot()
    await real.slash("maxtokens", {"value": 200}, user_id=ADMIN_ID)
    payload = await real.emulator.user_message(
        "Tell me a long story about a ship.", mentions_bot=True
    )
    await real.until(lambda: bool(real.emulator.sent_to(GENERAL_ID)[1:]))  # streaming began
    await real.emulator.drop_connection()
    await real.until(lambda: real.emulator.resume_count == 1)
    await real.handled(str(payload["id"]))
    reply = real.emulator.sent_to(GENERAL_ID)[-1]
    chat = await real.bot.repo.chat(ChatKey("discord", f"{BOT_ID}/{GENERAL_ID}"))
    stored = (await real.bot.repo.window(chat.id, 0))[-1]
    assert stored.status == "complete"
    assert reply.content.startswith(stored.content[:100])
    # After the resume, the bot still answers.
    assert await real.mention("Still there?")


async def test_an_expired_interaction_token_falls_back_to_channel_messages(
    discord_bot: StartHarness,
) -> None:
    backend = ScriptedBackend("local")
    backend.enqueue("A reply that took longer than the interaction token lives.")
    dc = await discord_bot(backend, interaction_lifetime=0.001)
    record = await dc.slash("ask", {"question": "Slow one?"})
    channel = [m for m in dc.emulator.sent_to(GENERAL_ID) if m.via == "channel"]
    assert channel[-1].content == "A reply that took longer than the interaction token lives."
    assert record.callbacks == [5]


async def test_probs_arrives_as_a_chart_attachment(discord_bot: StartHarness) -> None:
    dc = await discord_bot()
    record = await dc.slash("probs", {"text": "The capital of France is"})
    assert record.original is not None
    assert record.original.attachments == ["chart.png"]
    assert "raw   after" in (record.original_content or "")


async def test_probs_takes_every_typed_option_of_the_slash_command(
    discord_bot: StartHarness,
) -> None:
    dc = await discord_bot()
    options = {"text": "The capital of France is", "temperature": 0.3, "top_k": 2, "top_p": 0.99}
    record = await dc.slash("probs", options)
    content = record.original_content or ""
    # The text is the text option alone, and the options are used, not appended to it.
    assert content.startswith("Next token after 'The capital of France is' ")
    assert "settings: temperature 0.3, top_k 2, top_p 0.99," in content
    assert content.count("  cut") >= 8  # of the 10 shown, top_k 2 leaves at most 2
    # A value outside the range (Discord enforces it too) gets the same clear error as text.
    bad = await dc.slash("probs", {"text": "Hi", "top_p": 0})
    (error,) = [m.content for m in bad.followups if m.ephemeral]
    assert "is not a valid top_p" in error
    assert "Allowed:" in error


async def test_a_question_deleted_before_the_answer_still_gets_it(
    discord_bot: StartHarness,
) -> None:
    backend = GatedBackend()
    backend.enqueue("Here is the answer.")
    dc = await discord_bot(backend)
    question = await dc.emulator.user_message("A question", mentions_bot=True)
    async with asyncio.timeout(60):
        await backend.started.wait()
    await dc.emulator.delete_message(int(question["id"]))
    backend.gate.set()
    await dc.handled(str(question["id"]))
    # Discord refuses a reply to a deleted message unless it may go without the reference.
    (answer,) = dc.emulator.sent_to(GENERAL_ID)
    assert (answer.content, answer.reference) == ("Here is the answer.", None)


async def test_a_reply_cut_by_a_crash_is_marked_after_the_restart(
    discord_bot: StartHarness,
) -> None:
    backend = GatedBackend(stop_at=1, chunk=12)
    backend.enqueue("Once upon a time there was a fox.")
    dc = await discord_bot(backend)
    await dc.emulator.user_message("Tell a story", mentions_bot=True)
    async with asyncio.timeout(60):
        await backend.started.wait()  # the first piece is shown and checkpointed
    (cut,) = dc.emulator.sent_to(GENERAL_ID)
    assert cut.content == "Once upon a "
    # The process dies here: its reply is never finished. The next start finds it.
    await dc.adapter.stop()
    await crash(dc.bot)
    again = await discord_bot(ScriptedBackend("local"), emulator=dc.emulator)
    assert cut.content == "Once upon a [interrupted]"
    chat = await again.bot.repo.chat(ChatKey("discord", f"{BOT_ID}/{GENERAL_ID}"))
    rows = await again.bot.repo.window(chat.id, 0)
    assert [(r.content, r.status) for r in rows] == [
        ("Tell a story", "complete"),
        ("Once upon a ", "interrupted"),
    ]
    backend.gate.set()  # let the first bot's turn end before teardown


class FailingBackend(ScriptedBackend):
    """A model server that refuses every request with a very long explanation."""

    async def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cache_key: str,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[Chunk]:
        raise BackendUnavailable("the model server said: " + "no " * 900)
        yield Chunk("")  # an async generator, like every backend's stream


async def test_a_long_error_is_split_like_any_message(discord_bot: StartHarness) -> None:
    dc = await discord_bot(FailingBackend("local"))
    record = await dc.slash("ask", {"question": "Hello?"})
    errors = [m.content for m in record.followups if m.ephemeral]
    assert len(errors) == 2
    assert all(len(e) <= 2000 for e in errors)
    assert " ".join(errors).split() == ["⚠", "the", "model", "server", "said:", *["no"] * 900]


async def test_a_slash_command_during_shutdown_is_told_to_come_back(
    discord_bot: StartHarness,
) -> None:
    dc = await discord_bot(ScriptedBackend("local"))
    await dc.adapter.stop_taking()
    assert await dc.bot.router.drain(1.0) == 0
    record = await dc.slash("temp")
    (notice,) = [m.content for m in record.followups if m.ephemeral]
    assert "restarting" in notice
    assert record.original_content is None  # no silent "Done."


async def test_interaction_tokens_never_reach_the_logs(discord_bot: StartHarness) -> None:
    with debug_log() as log:
        dc = await discord_bot(ScriptedBackend("local"))
        record = await dc.slash("temp")
    output = log.getvalue()
    assert "/webhooks/" in output  # discord.py did log the interaction's webhook requests
    assert record.token not in output
    assert "voice will NOT be supported" not in output  # botkit uses no voice


async def test_a_denied_role_cannot_use_the_bot_by_dm_either(discord_bot: StartHarness) -> None:
    dc = await discord_bot(ScriptedBackend("local"), deny_role_ids=[ADMINS_ROLE_ID])
    # Admin has the denied role in the guild; a DM carries no roles, they are looked up.
    assert await dc.dm("hello", user_id=ADMIN_ID) == []
    denied = await dc.slash(
        "temp", user_id=ADMIN_ID, channel_id=dc.emulator.dm_channel_id(ADMIN_ID)
    )
    assert [m.content for m in denied.followups if m.ephemeral] == [
        "⚠ you are not allowed to use this bot here"
    ]
    # Alice, without it, is answered.
    assert [m.content for m in await dc.dm("hello")] == ["echo: hello"]


async def test_channels_stored_before_keys_named_the_bot_stay_with_it(
    discord_bot: StartHarness, make_config: MakeConfig
) -> None:
    # As an earlier botkit stored it: the channel id alone.
    async with build_bot(make_config(), backends={"local": ScriptedBackend("local")}) as old:
        chat = await old.repo.chat(ChatKey("discord", str(GENERAL_ID)))
        question = NewMessage(Role.USER, None, "My name is Ana.", 4, "s", MessageStatus.COMPLETE)
        _, reply = await old.repo.begin_turn(chat.id, question)
        answer = NewMessage(Role.ASSISTANT, None, "Hello Ana.", 3, "s", MessageStatus.COMPLETE)
        await old.repo.finish_turn(chat.id, reply, answer, None)
    backend = ScriptedBackend("local")
    dc = await discord_bot(backend)
    await dc.mention("What is my name?")
    assert [m["content"] for m in backend.prompts[0] if m["role"] != "system"] == [
        "My name is Ana.", "Hello Ana.", "Alice: What is my name?",
    ]  # fmt: skip
    assert (await dc.bot.repo.chat(ChatKey("discord", f"{BOT_ID}/{GENERAL_ID}"))).id == chat.id
