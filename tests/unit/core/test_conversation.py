"""A Conversation built from its parts alone (no Bot): a scripted backend, a repository on
SQLite in memory and a scheduler; a turn stores both messages and sends the planned prompt."""

from __future__ import annotations

from dataclasses import dataclass

from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import Backend
from botkit.backends.scripted import ScriptedBackend
from botkit.core.conversation import Conversation
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.scheduler import FairScheduler
from botkit.core.settings import ChatSettings
from botkit.store.models import MessageStatus
from botkit.store.repository import ChatRecord, Repository


@dataclass
class Asker:
    """The message of a turn, as the Conversation sees it (a TurnSource)."""

    incoming: Incoming
    chat: ChatRecord
    settings: ChatSettings
    target: MemoryTarget
    backend: Backend
    accepted_calls: int = 0

    def accepted(self) -> None:
        self.accepted_calls += 1


async def test_a_turn_without_a_bot_stores_the_reply_and_sends_the_planned_prompt(
    repo: Repository,
) -> None:
    backend = ScriptedBackend("local")
    backend.enqueue("Tea, surely.")
    settings = ChatSettings(backend="local", persona="You are terse.")
    conversation = Conversation(
        {"local": backend}, lambda: repo, FairScheduler(), defaults=settings
    )
    key = ChatKey("test", "a")
    incoming = Incoming(chat=key, user=User("u1", "alice"), text="What do I drink?", is_dm=True)
    asker = Asker(incoming, await repo.chat(key), settings, MemoryTarget(), backend)

    reply = await conversation.respond(asker, "What do I drink?")

    assert reply.text == "Tea, surely."
    assert reply.status == MessageStatus.COMPLETE
    assert asker.target.text == "Tea, surely."
    assert asker.accepted_calls == 1  # the platform may confirm the message once written
    assert backend.prompts == [
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What do I drink?"},
        ]
    ]
    rows = await repo.window(asker.chat.id, 0)
    assert [(r.role, r.content, r.status) for r in rows] == [
        ("user", "What do I drink?", MessageStatus.COMPLETE),
        ("assistant", "Tea, surely.", MessageStatus.COMPLETE),
    ]
    assert rows[1].seed == reply.seed


async def test_a_second_turn_sees_the_first_in_its_prompt(repo: Repository) -> None:
    backend = ScriptedBackend("local")
    backend.enqueue("Hello Alice.", "You are Alice.")
    settings = ChatSettings(backend="local", persona="p")
    conversation = Conversation(
        {"local": backend}, lambda: repo, FairScheduler(), defaults=settings
    )
    key = ChatKey("test", "a")
    for text in ("I am Alice.", "Who am I?"):
        incoming = Incoming(chat=key, user=User("u1", "alice"), text=text, is_dm=True)
        asker = Asker(incoming, await repo.chat(key), settings, MemoryTarget(), backend)
        await conversation.respond(asker, text)
    assert [m["content"] for m in backend.prompts[1]] == [
        "p", "I am Alice.", "Hello Alice.", "Who am I?"
    ]  # fmt: skip
