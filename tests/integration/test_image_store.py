"""The pictures users send, in the store, on SQLite and PostgreSQL: stored once however often
sent, written ahead with the question that carries them, read back after a restart, deleted
with the chat's history unless another chat's message still carries them, and never left
half-written by a crash."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.images.spec import Image
from botkit.store.db import create_engine, upgrade
from botkit.store.models import IMAGES, MESSAGE_IMAGES, MESSAGES, MessageStatus
from botkit.store.repository import NewMessage, Repository
from tests.conftest import REPO
from tests.integration.test_store import _message_columns, to
from tests.kill_between import picture


def _question(text: str = "what is this?") -> NewMessage:
    return NewMessage(Role.USER, "ann", text, 4, "t", MessageStatus.COMPLETE)


def _answer(text: str) -> NewMessage:
    return NewMessage(Role.ASSISTANT, None, text, 2, "t", MessageStatus.COMPLETE)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database."""
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[Repository]:
    """A repository on it."""
    repo = Repository(engine)
    yield repo
    await repo.close()


async def _turn(repo: Repository, chat: str, images: list[Image], answer: str = "a cat") -> int:
    """A whole turn with pictures in chat; the question's id."""
    record = await repo.chat(ChatKey("t", chat))
    user_id, reply_id = await repo.begin_turn(record.id, _question(), images=images)
    assert user_id is not None
    await repo.finish_turn(record.id, reply_id, _answer(answer), None)
    return user_id


async def _stored_images(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(IMAGES.c.sha256))).scalars())


async def test_the_same_picture_is_stored_once(repo: Repository, engine: AsyncEngine) -> None:
    first = await repo.images.save(picture(1))
    assert await repo.images.save(picture(1)) == first
    other = await repo.images.save(picture(2))
    assert other != first
    record = await repo.chat(ChatKey("t", "a"))
    _, _reply = await repo.begin_turn(record.id, _question(), images=[picture(1), picture(1)])
    assert await _stored_images(engine) == {picture(1).sha256, picture(2).sha256}
    window = await repo.window(record.id, 0)
    assert window[0].images == (first, first)
    assert await repo.images.load([first, other]) == {first: picture(1), other: picture(2)}


async def test_a_question_keeps_its_pictures_across_a_restart(engine: AsyncEngine) -> None:
    before = Repository(engine)
    saved = await before.images.save(picture(3))  # sent earlier: kept, then sent again
    record = await before.chat(ChatKey("t", "a"))
    user = NewMessage(Role.USER, "ann", "and these?", 4, "t", MessageStatus.COMPLETE, None,
                      None, None, (saved,))  # fmt: skip
    user_id, reply_id = await before.begin_turn(record.id, user, images=[picture(4), picture(5)])
    await before.finish_turn(record.id, reply_id, _answer("three cats"), None)
    await before.close()

    after = Repository(engine)  # a new process on the same database
    try:
        rows = await after.window(record.id, 0)
        assert [r.id for r in rows] == [user_id, reply_id]
        assert rows[1].images == ()
        loaded = await after.images.load(rows[0].images)
        assert [loaded[i] for i in rows[0].images] == [picture(3), picture(4), picture(5)]
    finally:
        await after.close()


async def test_a_chat_without_pictures_reads_no_images(repo: Repository) -> None:
    record = await repo.chat(ChatKey("t", "plain"))
    await repo.add_messages(record.id, [_question("hi"), _answer("hello")])
    repo.drop_caches()
    assert [r.images for r in await repo.window(record.id, 0)] == [(), ()]


async def test_reset_deletes_the_chats_pictures_but_not_those_another_chat_carries(
    repo: Repository, engine: AsyncEngine
) -> None:
    shared, own = picture(6), picture(7)
    await _turn(repo, "a", [shared, own])
    await _turn(repo, "a", [own])
    await _turn(repo, "b", [shared])
    own_id = (await repo.window((await repo.chat(ChatKey("t", "a"))).id, 0))[0].images[1]
    assert own_id in await repo.images.load([own_id])  # cached now

    assert await repo.clear_history((await repo.chat(ChatKey("t", "a"))).id) == 4
    assert await _stored_images(engine) == {shared.sha256}
    assert await repo.images.load([own_id]) == {}  # gone from the cache too
    repo.drop_caches()
    b = await repo.window((await repo.chat(ChatKey("t", "b"))).id, 0)
    assert list((await repo.images.load(b[0].images)).values()) == [shared]

    await repo.clear_history((await repo.chat(ChatKey("t", "b"))).id)
    assert await _stored_images(engine) == set()
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(MESSAGE_IMAGES))).scalar() == 0


async def test_a_description_is_kept_with_its_picture(repo: Repository) -> None:
    image_id = await repo.images.save(picture(8))
    assert await repo.images.description(image_id) is None
    await repo.images.describe(image_id, "a tabby cat on a mat", "seer")
    assert await repo.images.description(image_id) == ("a tabby cat on a mat", "seer")


async def test_a_turn_that_saves_a_picture_a_reset_is_deleting_keeps_it(
    engine: AsyncEngine,
) -> None:
    """Two processes: one clears chat a (the only carrier of a picture) while the other
    links the same picture to chat b's question. Whatever the order, chat b's question
    keeps its picture, and chat a's history is gone."""
    first, second = Repository(engine), Repository(engine)
    try:
        for _ in range(5):
            await _turn(first, "a", [picture(9)])
            chat_a = (await first.chat(ChatKey("t", "a"))).id
            chat_b = (await second.chat(ChatKey("t", "b"))).id
            cleared, (user_id, _) = await asyncio.gather(
                first.clear_history(chat_a),
                second.begin_turn(chat_b, _question(), images=[picture(9)]),
            )
            assert cleared == 2
            second.drop_caches()
            question = next(r for r in await second.window(chat_b, 0) if r.id == user_id)
            assert list((await second.images.load(question.images)).values()) == [picture(9)]
            await second.clear_history(chat_b)
            assert await _stored_images(engine) == set()
    finally:
        await first.close()
        await second.close()


def _dangling(connection: Connection) -> tuple[int, int]:
    """(links to a missing image, messages whose images column disagrees with their links)."""
    links = connection.execute(
        select(func.count())
        .select_from(MESSAGE_IMAGES.outerjoin(IMAGES, IMAGES.c.id == MESSAGE_IMAGES.c.image_id))
        .where(IMAGES.c.id.is_(None))
    ).scalar_one()
    rows = connection.execute(select(MESSAGES.c.id, MESSAGES.c.images)).all()
    linked: dict[int, list[int]] = {}
    for message_id, _position, image_id in connection.execute(
        select(MESSAGE_IMAGES).order_by(MESSAGE_IMAGES.c.message_id, MESSAGE_IMAGES.c.position)
    ):
        linked.setdefault(message_id, []).append(image_id)
    disagree = sum(1 for message_id, ids in rows if (ids or []) != linked.get(message_id, []))
    return links, disagree


async def _killed(url: str, operation: str, kill_at: int) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kill_between", url, operation, str(kill_at),
        cwd=REPO, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await child.communicate()
    assert child.returncode in (0, -9), stderr.decode()
    return child.returncode


async def _state(engine: AsyncEngine) -> tuple[list[tuple[str, tuple[str, ...]]], set[str]]:
    """(chat t/img's messages with their pictures' sha256, every stored picture)."""
    repo = Repository(engine)
    try:
        record = await repo.chat(ChatKey("t", "img"))
        rows = await repo.window(record.id, 0)
        out = []
        for row in rows:
            loaded = await repo.images.load(row.images)
            out.append((row.content, tuple(loaded[i].sha256 for i in row.images)))
        async with engine.connect() as conn:
            assert await conn.run_sync(_dangling) == (0, 0)
        return out, await _stored_images(engine)
    finally:
        await repo.close()


@pytest.mark.parametrize("operation", ["image_turn", "image_reset"])
async def test_a_kill_between_the_steps_leaves_no_message_without_its_pictures(
    engine: AsyncEngine, db_url: str, operation: str
) -> None:
    ones = (picture(1).sha256, picture(2).sha256)
    done = [("what is this?", ones), ("", ())]
    State = tuple[list[tuple[str, tuple[str, ...]]], set[str]]
    before: State
    after: State
    if operation == "image_reset":
        assert await _killed(db_url, "image_turn", 0) == 0  # the turn to clear
        before, after = (done, set(ones)), ([], set())
    else:
        before, after = ([], set()), (done, set(ones))
    outcomes = []
    for kill_at in range(1, 40):
        if operation == "image_turn":  # each try starts from an empty chat
            async with engine.begin() as conn:
                await conn.execute(MESSAGES.delete())
                await conn.execute(IMAGES.delete())
        if await _killed(db_url, operation, kill_at) == 0:
            break
        state = await _state(engine)
        assert state in (before, after), kill_at
        outcomes.append(state == after)
    # Killed after each statement (nothing done), then not killed, or killed after the commit.
    assert len(outcomes) >= 4
    assert not any(outcomes[:-1])
    assert await _state(engine) == after


_columns_0011 = [
    "id", "chat_id", "role", "author", "content", "token_count", "tokenizer_id", "status", "seed",
    "created_at", "reply_ref", "replaces", "stats", "owner", "tool",
]  # fmt: skip


async def test_0012_comes_and_goes(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0011"))
        await upgrade(engine)
        repo = Repository(engine)
        await _turn(repo, "a", [picture(1)])
        await repo.close()
        async with engine.begin() as conn:
            await conn.run_sync(to("0011", down=True))
        async with engine.connect() as conn:
            assert "images" not in await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert await conn.run_sync(_message_columns) == _columns_0011
            count = select(func.count()).select_from(MESSAGES)
            assert (await conn.execute(count)).scalar() == 2  # the text stays
        await upgrade(engine)  # and up again over the kept rows
    finally:
        await engine.dispose()
