"""The Telegram adapter: real python-telegram-bot against the local Bot API emulator."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from botkit.adapters.telegram import TelegramAdapter
from botkit.backends.base import Message, Role
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.events import ChatKey
from botkit.plugins.charts import PROBS_SIZE
from botkit.secrets import install_redaction, read_secret
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage
from tests.conftest import MakeConfig
from tests.emulators.telegram import BotApiEmulator, SentMessage
from tests.emulators.telegram.server import BOT_USERNAME
from tests.gated import GatedBackend
from tests.handled import HandledLog
from tests.harness import debug_log, stop_all

GROUP = -100200
ADMIN = 42
MEMBER = 43


@dataclass
class Harness:
    """A running bot on Telegram (emulated), with helpers to talk to it."""

    emulator: BotApiEmulator
    adapter: TelegramAdapter
    bot: Bot
    handled: HandledLog

    def chat(self, chat_id: int = 1001) -> ChatKey:
        """The conversation of chat_id with this bot."""
        return ChatKey("telegram", f"{self.emulator.bot_id}/{chat_id}")

    async def say(self, text: str, **kwargs: Any) -> list[SentMessage]:
        chat_id = kwargs.get("chat_id", 1001)
        before = len(self.emulator.sent_to(chat_id))
        update_id = await self.emulator.user_message(text, **kwargs)
        async with asyncio.timeout(60):
            await self.handled.wait(update_id)
        return self.emulator.sent_to(chat_id)[before:]


StartHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def telegram(make_config: MakeConfig) -> AsyncIterator[StartHarness]:
    running: list[tuple[Harness, asyncio.Task[None]]] = []

    async def start(
        backend: ScriptedBackend | None = None, webhook_secret: str | None = None,
        token: str | None = None, **telegram: Any,
    ) -> Harness:  # fmt: skip
        emulator = BotApiEmulator(token=token) if token else BotApiEmulator()
        await emulator.start()
        os.environ["BOTKIT_TEST_TG_TOKEN"] = emulator.token
        token = read_secret("BOTKIT_TEST_TG_TOKEN", "none")
        assert token == emulator.token
        config = make_config(
            telegram={"enabled": True, "api_base_url": emulator.base_url, "poll_timeout": 1,
                      **telegram},
        )  # fmt: skip
        bot = build_bot(config, backends={"local": backend} if backend else None)
        await bot.start()
        adapter = TelegramAdapter(
            config.telegram, token, bot.registry, webhook_secret,
            store=bot.repo, mark_interval=config.service.heartbeat_interval,
        )  # fmt: skip
        handled = HandledLog()
        adapter.on_handled = handled.add
        task = asyncio.create_task(adapter.start(bot.router))
        ready = "setWebhook" if webhook_secret else "getUpdates"
        async with asyncio.timeout(30):
            await emulator.wait_for(lambda: ready in emulator.calls)
        harness = Harness(emulator, adapter, bot, handled)
        running.append((harness, task))
        return harness

    yield start
    await stop_all(running)


async def test_dm_conversation_keeps_context(telegram: StartHarness) -> None:
    tg = await telegram()
    names = {c["command"]: c["description"] for c in tg.emulator.commands}
    assert names["temp"].startswith("Show or set the temperature")
    assert {"ask", "persona", "seed", "context", "model", "help"} <= set(names)
    first = await tg.say("My name is Alice and I like tea.")
    assert first
    assert first[0].text.strip()
    assert (1001, "typing") in tg.emulator.actions
    second = await tg.say("What do I like to drink?")
    assert second[0].text.strip()
    context = await tg.say("/context")
    assert "(4 messages)" in context[0].text


async def test_a_bad_argument_in_a_dm_gets_a_clear_error(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    reply = await tg.say("/temp 3")
    assert reply[0].text.startswith("⚠ /temp: '3' is not a valid value")
    assert "Allowed: a number from 0.0 up to 2.0" in reply[0].text
    assert (await tg.say("/temp"))[0].text == "temperature is 0.7 (default 0.7)"


async def test_a_group_answers_only_when_addressed(telegram: StartHarness) -> None:
    tg = await telegram()
    assert await tg.say("hello everyone, nice weather", chat_id=GROUP, group=True) == []
    assert await tg.say("/temp@some_other_bot 0.1", chat_id=GROUP, group=True) == []
    answer = await tg.say("@botkit_test_bot what is 2 + 2?", chat_id=GROUP, group=True)
    assert len(answer) >= 1
    assert answer[0].reply_to is not None  # it answers the message that asked
    follow = await tg.say("and 3 + 3?", chat_id=GROUP, group=True, reply_to=answer[-1])
    assert follow
    chat = await tg.bot.repo.chat(tg.chat(GROUP))
    rows = await tg.bot.repo.window(chat.id, 0)
    users = [r for r in rows if r.role == "user"]
    assert [u.author for u in users] == ["Alice", "Alice"]
    assert users[0].content == "what is 2 + 2?"  # the mention is not part of the question


async def test_a_mention_is_removed_and_nothing_else(telegram: StartHarness) -> None:
    """Code keeps its newlines and indentation; the emoji before the mention makes Telegram's
    offsets (UTF-16 code units) differ from Python's (characters)."""
    tg = await telegram(ScriptedBackend("local"))
    code = "```python\ndef f(x):\n    if x:\n        return 1\n\treturn 0\n```"
    asked = await tg.say(f"🙂 @botkit_test_bot why is this wrong?\n{code}", chat_id=GROUP,
                         group=True)  # fmt: skip
    assert asked
    chat = await tg.bot.repo.chat(tg.chat(GROUP))
    users = [r for r in await tg.bot.repo.window(chat.id, 0) if r.role == "user"]
    assert users[0].content == f"🙂 why is this wrong?\n{code}"


async def test_only_group_admins_change_group_settings(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    tg.emulator.admins[GROUP] = {ADMIN}
    denied = await tg.say("/temp 0.2", chat_id=GROUP, group=True, user_id=MEMBER)
    assert "only people allowed to change this chat's settings" in denied[0].text
    shown = await tg.say("/temp", chat_id=GROUP, group=True, user_id=MEMBER)
    assert "temperature is 0.7" in shown[0].text
    allowed = await tg.say("/temp@botkit_test_bot 0.2", chat_id=GROUP, group=True, user_id=ADMIN)
    assert "set to 0.2" in allowed[0].text


async def test_a_10000_character_reply_arrives_as_three_messages(telegram: StartHarness) -> None:
    backend = ScriptedBackend("local", context_window=8192)
    text = " ".join(f"word{i:04d}" for i in range(1000))  # 9,999 characters
    backend.enqueue(text)
    tg = await telegram(backend)
    sent = await tg.say("Write a lot.")
    assert len(sent) == 3
    assert all(len(m.text) <= 4096 for m in sent)
    # Telegram trims each message, so the spaces at the cuts are gone; no word is lost or cut.
    assert [word for m in sent for word in m.text.split()] == text.split()


async def test_a_429_on_an_edit_is_waited_out(telegram: StartHarness) -> None:
    backend = ScriptedBackend("local")
    text = "The final text has to arrive complete, whatever the rate limits say. " * 3
    backend.enqueue(text)
    tg = await telegram(backend)
    tg.emulator.fail_next["editMessageText"].append((429, "Too Many Requests: retry after 1", 1))
    sent = await tg.say("Go.")
    assert sent[0].text == text.strip()  # Telegram trims
    assert tg.emulator.calls.count("editMessageText") >= 2  # the refused edit was retried


async def test_markdown_characters_are_delivered_as_they_are(telegram: StartHarness) -> None:
    backend = ScriptedBackend("local")
    text = "*bold* _under_ [link](http://x) `unbalanced ``` and \\ backslash <b>"
    backend.enqueue(text)
    tg = await telegram(backend)
    assert (await tg.say("Format something."))[0].text == text


async def test_an_update_delivered_twice_is_answered_once(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    update_id = await tg.emulator.user_message("/temp")
    async with asyncio.timeout(30):
        await tg.handled.wait(update_id)
    message = {
        "message_id": 99,
        "date": 0,
        "chat": {"id": 1001, "type": "private"},
        "from": {"id": 1001, "is_bot": False, "first_name": "Alice"},
        "text": "/temp",
    }
    await tg.emulator.push_update({"update_id": update_id, "message": message})
    marker = await tg.emulator.user_message("/topk")
    async with asyncio.timeout(30):
        await tg.handled.wait(marker)
    texts = [m.text for m in tg.emulator.sent_to(1001)]
    assert texts.count("temperature is 0.7 (default 0.7)") == 1


async def test_forum_topics_are_separate_conversations(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    tg.emulator.admins[GROUP] = {ADMIN}
    await tg.say("/temp 0.1", chat_id=GROUP, group=True, user_id=ADMIN, thread_id=5)
    in_five = await tg.say("/temp", chat_id=GROUP, group=True, thread_id=5)
    in_six = await tg.say("/temp", chat_id=GROUP, group=True, thread_id=6)
    assert "temperature is 0.1" in in_five[0].text
    assert in_five[0].thread_id == 5
    assert "temperature is 0.7" in in_six[0].text


async def test_the_token_never_reaches_the_logs(telegram: StartHarness) -> None:
    with debug_log() as log:
        install_redaction()
        tg = await telegram(ScriptedBackend("local"))
        await tg.say("hello")
    output = log.getvalue()
    assert "getUpdates" in output or "sendMessage" in output  # the libraries did log requests
    assert tg.emulator.token not in output
    assert tg.emulator.token.split(":")[1] not in output


async def test_polling_survives_server_errors(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    tg.emulator.fail_next["getUpdates"] += [(502, "Bad Gateway", None)] * 2
    async with asyncio.timeout(30):
        await tg.emulator.wait_for(lambda: not tg.emulator.fail_next["getUpdates"])
    reply = await tg.say("/temp")
    assert reply[0].text == "temperature is 0.7 (default 0.7)"
    assert tg.emulator.calls.count("getUpdates") >= 3


async def test_webhook_mode_checks_the_secret_token(telegram: StartHarness) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "s3cret-webhook-token_0123456789"
    tg = await telegram(
        ScriptedBackend("local"),
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram",
        webhook_port=port,
        webhook_secret=secret,
    )
    assert tg.emulator.webhook_secret == secret
    status, _ = await tg.emulator.post_webhook("/temp", "wrong-secret")
    assert status == 403
    status, _ = await tg.emulator.post_webhook("/temp", None)
    assert status == 403
    status, update_id = await tg.emulator.post_webhook("/temp", secret)
    assert status == 200
    async with asyncio.timeout(30):
        await tg.handled.wait(update_id)
    texts = [m.text for m in tg.emulator.sent_to(1001)]
    assert texts == ["temperature is 0.7 (default 0.7)"]
    # Shutting down: an update is refused, so that Telegram sends it again to the next start.
    await tg.adapter.stop_taking()
    status, late = await tg.emulator.post_webhook("/temp", secret)
    assert status == 503
    assert late not in tg.handled


async def test_allow_and_deny_lists(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"), deny_user_ids=[666], allow_chat_ids=[1001, 1002])
    assert await tg.say("/temp", chat_id=1001, user_id=666) == []
    assert await tg.say("/temp", chat_id=1003, user_id=1003) == []
    assert (await tg.say("/temp", chat_id=1002, user_id=1002))[0].text.startswith("temperature")


async def test_a_slow_reply_does_not_block_other_chats(telegram: StartHarness) -> None:
    tg = await telegram()
    await tg.say("/maxtokens 300", chat_id=2001, user_id=2001)
    slow = await tg.emulator.user_message(
        "Write a long story about a lighthouse keeper.", chat_id=2001, user_id=2001
    )
    async with asyncio.timeout(60):
        await tg.emulator.wait_for(lambda: bool(tg.emulator.sent_to(2001)[1:]))  # streaming
    quick = await tg.say("/temp", chat_id=2002, user_id=2002)
    assert quick[0].text.startswith("temperature is")
    assert slow not in tg.handled  # still generating when the other chat got its answer
    async with asyncio.timeout(60):
        await tg.handled.wait(slow)


async def test_probs_arrives_as_a_chart_with_its_numbers(telegram: StartHarness) -> None:
    tg = await telegram()
    texts = await tg.say("/probs The capital of France is")
    assert len(tg.emulator.photos) == 1
    chat_id, png, caption = tg.emulator.photos[0]
    assert chat_id == 1001
    assert Image.open(io.BytesIO(png)).size == PROBS_SIZE
    # The numbers come as text too: in the caption, or after the photo when too long for one.
    numbers = caption if caption is not None else texts[-1].text
    assert "raw   after" in numbers
    assert "survive the cut" in numbers


async def test_a_reply_whose_message_is_deleted_goes_on_in_a_new_message(
    telegram: StartHarness,
) -> None:
    backend = GatedBackend(stop_at=1, chunk=10)
    text = "First part, then the second part after the gate."
    backend.enqueue(text)
    tg = await telegram(backend)
    update = await tg.emulator.user_message("Talk to me.")
    async with asyncio.timeout(60):
        await backend.started.wait()
    (first,) = tg.emulator.sent_to(1001)
    assert first.text == "First part"
    tg.emulator.delete_message(1001, first.message_id)  # the user deletes it mid-reply
    backend.gate.set()
    async with asyncio.timeout(60):
        await tg.handled.wait(update)
    later = [m.text for m in tg.emulator.sent_to(1001)[1:]]
    assert later == [text.removeprefix("First part").strip()]  # the rest, not an error
    chat = await tg.bot.repo.chat(tg.chat())
    (_, reply) = await tg.bot.repo.window(chat.id, 0)
    assert (reply.content, reply.status) == (text, "complete")


class SlowToCount(ScriptedBackend):
    """Holds the tokenizing of a message containing "hold" (before it is stored) until told."""

    def __init__(self) -> None:
        super().__init__("local")
        self.counting = asyncio.Event()
        self.release = asyncio.Event()

    async def message_tokens(self, message: Message) -> int:
        if "hold" in message["content"]:
            self.counting.set()
            await self.release.wait()
        return await super().message_tokens(message)


async def test_an_update_is_confirmed_to_telegram_only_once_its_message_is_stored(
    telegram: StartHarness,
) -> None:
    backend = SlowToCount()
    tg = await telegram(backend)
    update = await tg.emulator.user_message("hold on to this")
    async with asyncio.timeout(60):
        await backend.counting.wait()
    # Telegram forgets an update once a getUpdates asks past it: not before it is stored.
    assert not tg.emulator.delivered(update)
    chat = await tg.bot.repo.chat(tg.chat())
    assert await tg.bot.repo.window(chat.id, 0) == []
    backend.release.set()
    async with asyncio.timeout(60):
        await tg.handled.wait(update)
        await tg.emulator.wait_for(lambda: tg.emulator.delivered(update))
    rows = await tg.bot.repo.window(chat.id, 0)
    assert [(r.role, r.content) for r in rows] == [
        ("user", "hold on to this"),
        ("assistant", "echo: hold on to this"),
    ]


async def test_an_edit_that_only_adds_whitespace_is_not_an_error(telegram: StartHarness) -> None:
    backend = ScriptedBackend("local", chunk=6)
    text = "Hello " + "\n" * 6 + "world!"  # the second chunk changes nothing Telegram shows
    backend.enqueue(text)
    tg = await telegram(backend, dm_edit_interval=0.0)
    await tg.say("Hi")
    # One message edited in place, not a "refused" edit that moved the rest to a new one.
    assert [m.text for m in tg.emulator.sent_to(1001)] == [text]


async def test_start_greets_and_names_help_in_dms_and_groups(telegram: StartHarness) -> None:
    tg = await telegram(ScriptedBackend("local"))
    (greeting,) = await tg.say("/start")
    assert "/help" in greeting.text
    assert "unknown" not in greeting.text
    (linked,) = await tg.say("/start ref_42")  # a deep link t.me/bot?start=ref_42
    assert linked.text == greeting.text
    (in_group,) = await tg.say(f"/start@{BOT_USERNAME}", chat_id=GROUP, group=True)
    assert "Mention me" in in_group.text
    (helped,) = await tg.say(f"/help@{BOT_USERNAME}", chat_id=GROUP, group=True)
    assert helped.text.startswith("Commands:")


async def test_updates_arriving_during_shutdown_stay_with_telegram_for_the_next_start(
    telegram: StartHarness,
) -> None:
    tg = await telegram(ScriptedBackend("local"))
    first = await tg.emulator.user_message("hello")
    async with asyncio.timeout(60):
        await tg.handled.wait(first)
    await tg.adapter.stop_taking()
    late = await tg.emulator.user_message("are you there?")
    assert await tg.bot.router.drain(5.0) == 0
    assert tg.emulator.delivered(first)  # taken: confirmed
    assert not tg.emulator.delivered(late)
    await tg.adapter.stop()
    # The next start gets the late message (and not the first one again).
    bot = build_bot(tg.bot.config, backends={"local": ScriptedBackend("local")})
    await bot.start()
    adapter = TelegramAdapter(
        tg.adapter.config, tg.emulator.token, bot.registry,
        store=bot.repo, mark_interval=bot.config.service.heartbeat_interval,
    )  # fmt: skip
    handled = HandledLog()
    adapter.on_handled = handled.add
    task = asyncio.create_task(adapter.start(bot.router))
    try:
        async with asyncio.timeout(60):
            await handled.wait(late)
    finally:
        await adapter.stop()
        await task
        await bot.close()
    assert [m.text for m in tg.emulator.sent_to(1001)] == ["echo: hello", "echo: are you there?"]


async def test_two_bots_on_one_database_each_have_their_own_conversation_with_a_user(
    telegram: StartHarness,
) -> None:
    # A user's DMs with two bots have the same chat id (the user's): the bots must not share it.
    first, second = ScriptedBackend("local"), ScriptedBackend("local")
    coder = await telegram(first)
    poet = await telegram(second, token="654321:OTHER-token-not-real-9876543210")
    assert (await coder.say("My name is Ana."))[0].text == "echo: My name is Ana."
    assert (await poet.say("What is my name?"))[0].text == "echo: What is my name?"
    assert [m["content"] for m in second.prompts[0] if m["role"] != "system"] == [
        "What is my name?"
    ]
    await coder.say("Do you remember me?")
    assert [m["content"] for m in first.prompts[1] if m["role"] != "system"] == [
        "My name is Ana.", "echo: My name is Ana.", "Do you remember me?",
    ]  # fmt: skip


async def test_chats_stored_before_keys_named_the_bot_stay_with_it(
    telegram: StartHarness, make_config: MakeConfig
) -> None:
    # As an earlier botkit stored them: the chat id alone, and a reply cut by a crash.
    async with build_bot(make_config(), backends={"local": ScriptedBackend("local")}) as old:
        chat = await old.repo.chat(ChatKey("telegram", "1001"))
        question = NewMessage(Role.USER, None, "My name is Ana.", 4, "s", MessageStatus.COMPLETE)
        _, reply = await old.repo.begin_turn(chat.id, question)
        await old.repo.checkpoint(reply, "Nice to meet", "1")
    backend = ScriptedBackend("local")
    tg = await telegram(backend)
    await tg.say("What is my name?")
    assert [m["content"] for m in backend.prompts[0] if m["role"] != "system"] == [
        "My name is Ana.", "Nice to meet", "What is my name?",
    ]  # fmt: skip
    assert (await tg.bot.repo.chat(tg.chat())).id == chat.id
