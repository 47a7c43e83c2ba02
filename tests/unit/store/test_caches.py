"""The store's caches: recently used chats and kept windows, bounded and least recently used
first; the one-process guard that stops caching a chat another process writes; and the
repository keeping them right through its own writes (SQLite in memory)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import insert

from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.store.caches import Caches
from botkit.store.guard import OwnerGuard
from botkit.store.models import MESSAGES, MessageStatus, utc_now
from botkit.store.records import ChatRecord, NewMessage, StoredMessage
from botkit.store.repository import Repository

QUESTION = NewMessage(Role.USER, None, "q", 3, "t", MessageStatus.COMPLETE)
ANSWER = NewMessage(Role.ASSISTANT, None, "a", 2, "t", MessageStatus.COMPLETE)


def chat(n: int) -> ChatRecord:
    return ChatRecord(n, ChatKey("t", str(n)), {}, 0)


def message(n: int) -> StoredMessage:
    return QUESTION.stored(n)


def test_the_least_recently_used_chat_goes_first() -> None:
    caches = Caches(2)
    caches.keep_chat(chat(1))
    caches.keep_chat(chat(2))
    assert caches.chat(chat(1).key) == chat(1)  # now 1 is the most recently used
    caches.keep_chat(chat(3))
    assert [caches.chat(chat(n).key) for n in (1, 2, 3)] == [chat(1), None, chat(3)]


def test_windows_are_bounded_apart_from_chats() -> None:
    caches = Caches(2)
    for n in (1, 2, 3):
        caches.keep_window(n, 0, [message(n)])
    assert [caches.rows(n) for n in (1, 2, 3)] == [None, [message(2)], [message(3)]]


def test_a_window_is_a_copy_trimmed_as_its_start_moves() -> None:
    caches = Caches(4)
    caches.keep_window(1, 10, [message(10), message(11), message(12)])
    shown = caches.window(1, 10)
    assert shown == [message(10), message(11), message(12)]
    assert shown is not None
    shown.clear()  # the caller's list, not the cache's
    assert caches.window(1, 11) == [message(11), message(12)]
    assert caches.rows(1) == [message(11), message(12)]  # trimmed for good
    assert caches.window(1, 10) is None  # what lies before the cached start is not there


def test_a_changed_chat_is_changed_in_the_cache_only_if_it_is_there() -> None:
    caches = Caches(1)
    caches.keep_chat(chat(1))
    caches.change_chat(1, lambda r: replace(r, window_start_id=7))
    caches.change_chat(2, lambda r: replace(r, window_start_id=9))  # not cached: nothing
    assert caches.chat(chat(1).key) == replace(chat(1), window_start_id=7)
    assert caches.chat(chat(2).key) is None


def test_a_chat_no_longer_cached_is_never_cached_again() -> None:
    caches = Caches(4)
    caches.keep_chat(chat(1))
    caches.keep_window(1, 0, [message(1)])
    assert caches.stop_caching(1)
    assert not caches.stop_caching(1)  # already so
    caches.keep_chat(chat(1))
    caches.keep_window(1, 0, [message(1)])
    assert (caches.chat(chat(1).key), caches.rows(1)) == (None, None)


def test_clearing_forgets_chats_and_windows() -> None:
    caches = Caches(4)
    caches.keep_chat(chat(1))
    caches.keep_window(1, 0, [])
    caches.clear_windows()
    assert (caches.chat(chat(1).key), caches.rows(1)) == (chat(1), None)
    caches.keep_window(1, 0, [])
    caches.clear()
    assert (caches.chat(chat(1).key), caches.rows(1)) == (None, None)


def test_the_guard_stops_caching_a_chat_with_a_row_it_did_not_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caches = Caches(4)
    guard = OwnerGuard(caches, 4)
    caches.keep_window(1, 0, [])
    guard.began(1, question_id=1, reply_id=2)
    assert guard.finishing(2) == (1, None)  # the chat's first turn here: nothing to compare
    guard.began(1, question_id=3, reply_id=4)
    question, before = guard.finishing(4)
    assert (question, before) == (3, 2)
    guard.check(1, before, newest=2)  # the row before the question is this process's own
    assert caches.rows(1) == []
    assert "another botkit process" not in caplog.text
    guard.began(1, question_id=6, reply_id=7)
    question, before = guard.finishing(7)
    with caplog.at_level(logging.ERROR):
        guard.check(1, before, newest=5)  # row 5 came between this process's turns
        guard.check(1, before, newest=5)
    assert caches.rows(1) is None
    assert caplog.text.count("chat 1 is also written by another botkit process") == 1
    assert guard.in_flight == {}


def test_a_retry_and_a_dropped_turn_leave_nothing_in_flight() -> None:
    guard = OwnerGuard(Caches(4), 4)
    guard.began(1, question_id=None, reply_id=2)  # a /retry: no question, nothing to check
    guard.began(1, question_id=3, reply_id=4)
    guard.dropped(4)
    assert (guard.in_flight, guard.finishing(2)) == ({}, (0, None))


async def test_a_turn_joins_the_cached_window_as_it_is_written(repo: Repository) -> None:
    record = await repo.chat(ChatKey("t", "x"))
    assert await repo.window(record.id, 0) == []
    user_id, reply_id = await repo.begin_turn(record.id, QUESTION)
    assert user_id is not None
    generating = StoredMessage(reply_id, Role.ASSISTANT, None, "", 0, "",
                               MessageStatus.GENERATING, None)  # fmt: skip
    assert repo._caches.rows(record.id) == [QUESTION.stored(user_id), generating]
    await repo.finish_turn(record.id, reply_id, ANSWER, None)
    cached = await repo.window(record.id, 0)
    repo.drop_caches()
    assert cached == await repo.window(record.id, 0) == [
        QUESTION.stored(user_id), ANSWER.stored(reply_id)
    ]  # fmt: skip
    assert [type(m.role) for m in cached] == [Role, Role]  # enums also when read back


async def test_settings_and_the_window_start_change_the_cached_chat(repo: Repository) -> None:
    record = await repo.chat(ChatKey("t", "x"))
    await repo.set_setting(record.id, "temperature", 0.3)
    await repo.set_window_start(record.id, 5)
    await repo.set_window_start(record.id, 3)  # never back
    changed = replace(record, overrides={"temperature": 0.3}, window_start_id=5)
    assert repo._caches.chat(record.key) == changed
    repo.drop_caches()
    assert await repo.chat(record.key) == changed  # as the database has it


async def test_a_row_from_another_process_stops_the_caching_of_its_chat(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    record = await repo.chat(ChatKey("t", "x"))
    _, first = await repo.begin_turn(record.id, QUESTION)
    await repo.finish_turn(record.id, first, ANSWER, None)
    async with repo.transaction() as conn:  # another process's turn, behind this one's back
        await conn.execute(
            insert(MESSAGES).values(chat_id=record.id, created_at=utc_now(), role=Role.USER,
                                    content="theirs", token_count=1, tokenizer_id="t",
                                    status=MessageStatus.COMPLETE)
        )  # fmt: skip
    assert [m.content for m in await repo.window(record.id, 0)] == ["q", "a"]  # cached
    _, second = await repo.begin_turn(record.id, QUESTION)
    with caplog.at_level(logging.ERROR):
        await repo.finish_turn(record.id, second, ANSWER, None)
    assert "is also written by another botkit process" in caplog.text
    assert [m.content for m in await repo.window(record.id, 0)] == ["q", "a", "theirs", "q", "a"]
    assert repo._caches.rows(record.id) is None
