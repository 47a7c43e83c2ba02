"""The store: Alembic owns a schema that matches the models; turns are atomic and ordered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.backends.base import Role
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.config import Config
from botkit.core.events import ChatKey
from botkit.store.db import create_engine, ensure_migrated, migrations_dir, upgrade
from botkit.store.leases import Lease
from botkit.store.models import Base, MessageRow, MessageStatus, included_in_schema
from botkit.store.plugin_data import Quota
from botkit.store.repository import NewMessage, Repository
from tests.conftest import say


def to(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    """A run_sync callable that migrates a connection up (or down) to revision."""

    def run(connection: Connection) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)

    return run


def _message_columns(connection: Connection) -> list[str]:
    return [c["name"] for c in inspect(connection).get_columns("messages")]


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"include_name": included_in_schema})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_create_exactly_the_models_schema_and_downgrade(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            indexes = await conn.run_sync(
                lambda c: [i["name"] for i in inspect(c).get_indexes("messages")]
            )
        assert "ix_messages_chat_id_id" in indexes

        async with engine.begin() as conn:
            await conn.run_sync(to("base", down=True))
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
    finally:
        await engine.dispose()


async def test_settings_move_into_json_and_back(db_url: str) -> None:
    engine = create_engine(db_url)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0002"))
            await conn.execute(
                text(
                    "INSERT INTO chats (platform, chat_key, temperature, persona, seed, "
                    "window_start_id, created_at, updated_at) VALUES ('t', 'x', 0.3, 'Be brief.', "
                    "4294967295, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(to("head"))
        repo = Repository(engine)
        chat = await repo.chat(ChatKey("t", "x"))
        assert chat.overrides == {"temperature": 0.3, "persona": "Be brief.", "seed": 4294967295}
        await repo.set_setting(chat.id, "presence_penalty", 0.5)  # a new option: no migration
        await repo.close()
        async with engine.begin() as conn:
            await conn.run_sync(to("0002", down=True))
            row = (
                await conn.execute(text("SELECT temperature, persona, seed, top_k FROM chats"))
            ).one()
        assert tuple(row) == (0.3, "Be brief.", 4294967295, None)
    finally:
        await engine.dispose()


async def test_turns_are_stored_in_order_and_reset_keeps_settings(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert await ensure_migrated(engine, auto_migrate_new=True)
        repo = Repository(engine)
        chat = await repo.chat(ChatKey("test", "x"))
        assert (await repo.chat(ChatKey("test", "x"))).id == chat.id
        await repo.set_setting(chat.id, "temperature", 0.4)
        for i in range(3):
            await repo.add_messages(
                chat.id,
                [
                    NewMessage(Role.USER, None, f"q{i}", 3, "t", MessageStatus.COMPLETE),
                    NewMessage(Role.ASSISTANT, None, f"a{i}", 3, "t", MessageStatus.COMPLETE, 9),
                ],
            )
        rows = await repo.window(chat.id, 0)
        assert [r.content for r in rows] == ["q0", "a0", "q1", "a1", "q2", "a2"]
        assert await repo.count_before(chat.id, rows[2].id) == 2
        assert (await repo.last_reply(chat.id)) == rows[-1]
        assert await repo.clear_history(chat.id) == 6
        again = await repo.chat(ChatKey("test", "x"))
        assert again.overrides["temperature"] == 0.4
        assert await repo.window(chat.id, 0) == []
        await repo.close()
    finally:
        await engine.dispose()


async def test_a_turn_reads_back_the_same_through_sqlalchemy(db_url: str) -> None:
    """The turn's statements (SQLite runs them on the aiosqlite connection itself) store
    exactly what SQLAlchemy reads back: dates, nulls, the status, the reply's handle."""
    engine = create_engine(db_url)
    try:
        assert await ensure_migrated(engine, auto_migrate_new=True)
        repo = Repository(engine)
        chat = await repo.chat(ChatKey("test", "rows"))
        before = datetime.now(UTC)
        user = NewMessage(Role.USER, "ann", "q", 3, "t", MessageStatus.COMPLETE)
        user_id, reply_id = await repo.begin_turn(chat.id, user)
        assert user_id is not None
        assert reply_id > user_id
        await repo.checkpoint(reply_id, "par", "ref-1")
        repo.drop_caches()
        assert [(r.content, r.status) for r in await repo.window(chat.id, 0)] == [
            ("q", MessageStatus.COMPLETE), ("par", MessageStatus.GENERATING)
        ]  # fmt: skip
        reply = NewMessage(Role.ASSISTANT, None, "partial", 2, "t", MessageStatus.COMPLETE, 7)
        await repo.finish_turn(chat.id, reply_id, reply, "ref-2")
        # A checkpoint after the finish changes nothing: it only touches a generating row.
        await repo.checkpoint(reply_id, "late", None)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(MessageRow).where(MessageRow.chat_id == chat.id).order_by(MessageRow.id)
                )
            ).all()
        got = [
            (r.id, r.role, r.author, r.content, r.token_count, r.status, r.seed, r.reply_ref,
             r.replaces)
            for r in rows
        ]  # fmt: skip
        assert got == [
            (user_id, "user", "ann", "q", 3, MessageStatus.COMPLETE, None, None, None),
            (reply_id, "assistant", None, "partial", 2, MessageStatus.COMPLETE, 7, "ref-2", None),
        ]
        for row in rows:
            created = row.created_at
            if created.tzinfo is None:  # SQLite keeps no zone: botkit writes UTC
                created = created.replace(tzinfo=UTC)
            assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
        await repo.close()
    finally:
        await engine.dispose()


async def test_the_repository_caches_a_bounded_number_of_chats(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert await ensure_migrated(engine, auto_migrate_new=True)
        repo = Repository(engine, cached_chats=3)
        chats = [await repo.chat(ChatKey("test", str(i))) for i in range(10)]
        for chat in chats:
            await repo.window(chat.id, 0)
        caches = repo._caches
        assert [c.id for c in chats if caches.chat(c.key) is not None] == [c.id for c in chats[7:]]
        assert [c.id for c in chats if caches.rows(c.id) is not None] == [c.id for c in chats[7:]]
        # A chat no longer cached is read again, the same.
        user = NewMessage(Role.USER, None, "q", 3, "t", MessageStatus.COMPLETE)
        await repo.begin_turn(chats[0].id, user)
        assert [r.content for r in await repo.window(chats[0].id, 0)] == ["q", ""]
        assert (await repo.chat(ChatKey("test", "0"))).id == chats[0].id
        await repo.close()
    finally:
        await engine.dispose()


async def test_a_bot_keeps_history_and_settings_across_restarts(db_url: str) -> None:
    config = Config(storage={"url": db_url})
    for run in range(2):
        backend = ScriptedBackend("local")
        async with build_bot(config, backends={"local": backend}) as bot:
            if run == 0:
                assert "set to 0.3" in (await say(bot, "/temp 0.3")).text
                assert (await say(bot, "Hello")).text == "echo: Hello"
            else:
                assert (await say(bot, "/temp")).text == "temperature is 0.3 (default 0.7)"
                await say(bot, "Again")
                assert [m["content"] for m in backend.prompts[0][1:]] == [
                    "Hello",
                    "echo: Hello",
                    "Again",
                ]


async def test_reply_stats_column_comes_and_goes_with_0005(db_url: str) -> None:
    engine = create_engine(db_url)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0004"))
        repo = Repository(engine)
        async with engine.begin() as conn:
            await conn.run_sync(to("head"))
            assert "stats" in await conn.run_sync(_message_columns)
        chat = await repo.chat(ChatKey("t", "x"))
        user = NewMessage(Role.USER, None, "q", 3, "t", MessageStatus.COMPLETE)
        _, reply_id = await repo.begin_turn(chat.id, user)
        figures = {"backend": "local", "prompt_tokens": 12, "cached_prompt_tokens": 8}
        reply = NewMessage(Role.ASSISTANT, None, "a", 3, "t", MessageStatus.COMPLETE, 1, figures)
        await repo.finish_turn(chat.id, reply_id, reply, None)
        assert await repo.last_stats(chat.id) == figures
        await repo.close()
        async with engine.begin() as conn:
            await conn.run_sync(to("0004", down=True))
            assert "stats" not in await conn.run_sync(_message_columns)
            count = (await conn.execute(text("SELECT COUNT(*) FROM messages"))).scalar_one()
        assert count == 2  # the messages stay, only their figures go
    finally:
        await engine.dispose()


async def test_a_chat_served_by_two_processes_is_detected_and_read_afresh(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each chat must be served by one process (the caches assume it). Two bots on one
    database writing the same chat: the one that finds a row it did not write stops caching
    the chat and says so in the log; its next prompt holds the other's turn."""
    config = Config(storage={"url": db_url})
    first, second = ScriptedBackend("local"), ScriptedBackend("local")
    async with build_bot(config, backends={"local": first}) as a:
        # Turns of one process, in other chats between them, several in flight at once, are
        # not mistaken for another's.
        for text in ("one", "two"):
            await say(a, text)
            await say(a, text, "elsewhere")
        await asyncio.gather(say(a, "three"), say(a, "three", "elsewhere"), say(a, "four"))
        assert "another botkit process" not in caplog.text
        async with build_bot(config, backends={"local": second}) as b:
            await say(b, "from the other process")
        await say(a, "five")
        assert "is also written by another botkit process" in caplog.text
        await say(a, "six")
        seen = [m["content"] for m in first.prompts[-1]]
        assert "from the other process" in seen
        assert seen[-1] == "six"


async def _old_turn(engine: AsyncEngine, chat_id: int, owner: str) -> int:
    """A question and its reply left generating by owner, in the columns of 0006 and 0007 (the
    repository writes those of head); returns the reply's id."""
    async with engine.begin() as conn:
        for role, status in (("user", "complete"), ("assistant", "generating")):
            written = await conn.execute(
                text("INSERT INTO messages (chat_id, role, content, token_count, token_model, "
                     "status, owner, created_at) VALUES (:chat_id, :role, 'q', 3, 't', :status, "
                     ":owner, CURRENT_TIMESTAMP) RETURNING id"),
                {"chat_id": chat_id, "role": role, "status": status,
                 "owner": owner if role == "assistant" else None},
            )  # fmt: skip
    return int(written.scalar_one())


async def test_0008_renames_token_model_to_tokenizer_id_and_back(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0007"))
            await conn.execute(
                text("INSERT INTO chats (platform, chat_key, overrides, window_start_id, "
                     "created_at, updated_at) VALUES ('t', 'x', '{}', 0, CURRENT_TIMESTAMP, "
                     "CURRENT_TIMESTAMP)")
            )  # fmt: skip
        await _old_turn(engine, 1, owner="gone")
        async with engine.begin() as conn:
            await conn.run_sync(to("0008"))
            assert "token_model" not in await conn.run_sync(_message_columns)
            # Read with SQL: today's Repository reads columns later revisions add.
            kept = await conn.execute(text("SELECT tokenizer_id FROM messages ORDER BY id"))
            assert list(kept.scalars()) == ["t", "t"]
        async with engine.begin() as conn:
            await conn.run_sync(to("0007", down=True))
            assert "tokenizer_id" not in await conn.run_sync(_message_columns)
            kept = await conn.execute(text("SELECT token_model FROM messages"))
            assert list(kept.scalars()) == ["t", "t"]
    finally:
        await engine.dispose()


async def test_reply_owner_column_comes_and_goes_with_0006(db_url: str) -> None:
    engine = create_engine(db_url)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0005"))
            assert "owner" not in await conn.run_sync(_message_columns)
            await conn.run_sync(to("0006"))
            assert "owner" in await conn.run_sync(_message_columns)
            await conn.run_sync(to("0005", down=True))
            assert "owner" not in await conn.run_sync(_message_columns)
    finally:
        await engine.dispose()


async def test_0007_keys_plugin_data_by_chat_and_frees_replies_of_named_owners(db_url: str) -> None:
    """Up: a plugin's values go to its own space (chat 0) with their sizes; a reply left
    generating under an instance name (0006) has no lease, so recovery takes it. Down: the
    plugin's own values stay, per-chat ones go, replies in flight lose their lease id."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0006"))
            await conn.execute(
                text("INSERT INTO plugin_data (plugin, key, value, updated_at) "
                     "VALUES ('dice', 'rolls:t:x', '7', CURRENT_TIMESTAMP)")
            )  # fmt: skip
        repo = Repository(engine)
        chat = await repo.chat(ChatKey("t", "x"))
        await repo.close()
        await _old_turn(engine, chat.id, owner="host:/old/config.toml")
        async with engine.begin() as conn:
            await conn.run_sync(to("0007"))
            rows = await conn.execute(text("SELECT plugin, chat_id, key, size FROM plugin_data"))
            assert [tuple(r) for r in rows] == [("dice", 0, "rolls:t:x", 1)]
        repo = Repository(engine)
        assert await repo.plugin_data.get("dice", 0, "rolls:t:x") == 7
        await repo.plugin_data.update("dice", chat.id, "rolls", lambda _: 3, Quota(10, 100))
        lease, recovered = await Lease.acquire(repo, None, interval=1.0, stale_after=3.0)
        assert recovered == 1
        async with engine.connect() as conn:
            statuses = await conn.execute(text("SELECT status FROM messages ORDER BY id"))
            assert list(statuses.scalars()) == ["complete", "interrupted"]
        reply_id = await _old_turn(engine, chat.id, owner=lease.id)  # now under a lease id
        await repo.close()
        async with engine.begin() as conn:
            await conn.run_sync(to("0006", down=True))
            rows = await conn.execute(text("SELECT plugin, key FROM plugin_data"))
            assert [tuple(r) for r in rows] == [("dice", "rolls:t:x")]
            owner = await conn.execute(
                text("SELECT owner FROM messages WHERE id = :id"), {"id": reply_id}
            )
            assert owner.scalar_one() is None
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert not {"leases", "cut_marks"} & set(tables)
    finally:
        await engine.dispose()
