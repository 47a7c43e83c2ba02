"""The Planner built from its parts alone (no Bot): a scripted backend, a repository on SQLite
in memory and the history settings."""

from __future__ import annotations

from botkit.backends.base import Message, Role
from botkit.backends.scripted import ScriptedBackend
from botkit.config import HistoryConfig
from botkit.core.events import ChatKey
from botkit.core.planner import Planner
from botkit.core.settings import ChatSettings
from botkit.store.models import MessageStatus
from botkit.store.repository import NewMessage, Repository


async def test_a_long_history_is_trimmed_to_the_watermark_and_the_persona_kept(
    repo: Repository,
) -> None:
    backend = ScriptedBackend("local", context_window=400)
    planner = Planner(HistoryConfig(trim_to=0.5), {"local": backend}, lambda: repo)
    settings = ChatSettings(backend="local", max_tokens=64)
    chat = await repo.chat(ChatKey("test", "a"))
    for n in range(20):
        role = Role.USER if n % 2 == 0 else Role.ASSISTANT
        text = f"message {n} " + "word " * 20
        count = await backend.message_tokens({"role": role, "content": text})
        await repo.add_messages(
            chat.id, [NewMessage(role, None, text, count, "scripted", MessageStatus.COMPLETE)]
        )
    rows = await planner.history(chat, backend)
    plan = await planner.plan(chat, settings, rows, {"role": "user", "content": "and now?"})
    budget = planner.budget(backend, settings)
    assert plan.used <= budget
    assert plan.used - plan.new_tokens - plan.persona_tokens <= int(budget * 0.5)
    assert plan.messages[0] == {"role": "system", "content": settings.persona}
    assert plan.messages[1]["role"] == "user"  # never a reply first after the persona
    assert plan.messages[-1] == {"role": "user", "content": "and now?"}
    assert plan.start_id > chat.window_start_id
    report = await planner.report(chat, settings)  # /context: the rows before the kept ones
    assert report.dropped_messages == report.plan.start_id - 1 > 0


async def test_retrieval_takes_at_most_half_of_what_the_history_could_have(
    repo: Repository,
) -> None:
    backend = ScriptedBackend("local", context_window=600)
    planner = Planner(HistoryConfig(), {"local": backend}, lambda: repo)
    chat = await repo.chat(ChatKey("test", "half"))
    settings = ChatSettings(backend="local", max_tokens=64)
    new: Message = {"role": "user", "content": "hello"}
    small = await planner.plan(chat, settings, [], new, reserve=(50, 30))
    assert (small.memory_budget, small.knowledge_budget) == (50, 30)
    fixed = small.persona_tokens + small.new_tokens
    room = planner.budget(backend, settings) - fixed
    large = await planner.plan(chat, settings, [], new, reserve=(1000, 1000))
    assert large.memory_budget == room // 2
    assert large.knowledge_budget == 0
