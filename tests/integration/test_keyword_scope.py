"""The keyword index's scope (migration 0010): a search returns its own chat's chunks only,
however many other chats hold the same words; 0009's chunks are found after the upgrade,
and an upgrade killed at any statement is completed by the next."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from botkit.backends.base import Role
from botkit.core.events import ChatKey
from botkit.store.chunks import NewChunk, Source
from botkit.store.db import create_engine, upgrade
from botkit.store.documents import NewDocument
from botkit.store.models import MessageStatus
from botkit.store.records import NewMessage
from botkit.store.repository import Repository
from tests.conftest import REPO
from tests.integration.test_store import to


async def _said(repo: Repository, chat_id: int, texts: list[str]) -> list[int]:
    """The texts as the chat's complete messages, each with its chunk: their chunk ids'
    message ids."""
    said = [NewMessage(Role.USER, "u", t, 5, "x", MessageStatus.COMPLETE) for t in texts]
    ids = await repo.add_messages(chat_id, said)
    await repo.chunks.add(
        [NewChunk(chat_id, t, 5, message_id=i) for t, i in zip(texts, ids, strict=True)]
    )
    return ids


async def _found(repo: Repository, chat_id: int, source: Source, query: str) -> list[str]:
    hits = await repo.chunks.keyword(chat_id, source, query, 100)
    texts = await repo.chunks.texts([i for i, _ in hits])
    return sorted(texts[i].text for i, _ in hits)


async def test_a_search_returns_its_own_chats_chunks_only(db_url: str) -> None:
    engine = create_engine(db_url)
    await upgrade(engine)
    repo = Repository(engine, owner="test")
    try:
        many = await repo.chat(ChatKey("t", "many"))
        few = await repo.chat(ChatKey("t", "few"))
        none = await repo.chat(ChatKey("t", "none"))
        await _said(repo, many.id, [f"boiler pressure reading {n}" for n in range(3000)])
        await _said(repo, few.id, ["the boiler hisses", "trains leave at noon"])
        # The scope tokens' spelling as words: still only text, in its own chat.
        await _said(repo, none.id, ["trains leave at noon", f"m{many.id} d{many.id} d0"])
        own = NewDocument(many.id, "manual.md", "md", 10, None, "a" * 64)
        await repo.documents.add(own, [NewChunk(None, "boiler manual of many", 5)])
        shared = NewDocument(None, "all.md", "md", 10, None, "b" * 64)
        await repo.documents.add(shared, [NewChunk(None, "boiler rules for all", 5)])

        assert await _found(repo, none.id, "memory", "boiler pressure") == []
        assert await _found(repo, few.id, "memory", "boiler pressure") == ["the boiler hisses"]
        assert len(await _found(repo, many.id, "memory", "boiler pressure")) == 100
        assert await _found(repo, few.id, "memory", f"m{many.id} d0") == []
        tokens = f"m{many.id} d{many.id} d0"
        assert await _found(repo, none.id, "memory", tokens) == [tokens]
        assert await _found(repo, many.id, "memory", "manual rules") == []  # documents
        assert await _found(repo, few.id, "knowledge", "boiler") == ["boiler rules for all"]
        assert await _found(repo, many.id, "knowledge", "boiler") == [
            "boiler manual of many",
            "boiler rules for all",
        ]
        assert await _found(repo, none.id, "knowledge", "reading noon") == []  # messages
    finally:
        await repo.close()
        await engine.dispose()


async def _said_at_0009(repo: Repository, chat_id: int, texts: list[str]) -> None:
    """_said on a database at 0009: the messages written with SQL (today's Repository writes
    columns that later revisions add), their chunks as today."""
    ids = []
    async with repo.transaction() as conn:
        for said in texts:
            row = await conn.execute(
                text("INSERT INTO messages (chat_id, role, author, content, token_count, "
                     "tokenizer_id, status, created_at) VALUES (:chat, 'user', 'u', :said, 5, "
                     "'x', 'complete', CURRENT_TIMESTAMP) RETURNING id"),
                {"chat": chat_id, "said": said},
            )  # fmt: skip
            ids.append(int(row.scalar_one()))
    await repo.chunks.add(
        [NewChunk(chat_id, t, 5, message_id=i) for t, i in zip(texts, ids, strict=True)]
    )


async def _at_0009_with_chunks(db_url: str) -> None:
    """A database at 0009 with two chats' messages and a document, indexed by 0009's
    triggers."""
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(to("0009"))
    repo = Repository(engine, owner="test")
    first = await repo.chat(ChatKey("t", "a"))
    second = await repo.chat(ChatKey("t", "b"))
    await _said_at_0009(repo, first.id, ["My dog's name is Biscuit.", "Trains leave at noon."])
    await _said_at_0009(repo, second.id, ["Biscuit is a cat here."])
    document = NewDocument(first.id, "boiler.md", "md", 50, None, "f" * 64)
    await repo.documents.add(document, [NewChunk(None, "Boiler pressure: 1.5 bar.", 6)])
    await repo.close()
    await engine.dispose()


async def _searches_as_before(db_url: str) -> None:
    """At head (0010's scope and later): each chat finds its own chunks, written before the
    upgrade and after."""
    engine = create_engine(db_url)
    repo = Repository(engine, owner="test")
    try:
        first = await repo.chat(ChatKey("t", "a"))
        second = await repo.chat(ChatKey("t", "b"))
        assert await _found(repo, first.id, "memory", "Biscuit") == ["My dog's name is Biscuit."]
        assert await _found(repo, second.id, "memory", "Biscuit") == ["Biscuit is a cat here."]
        assert await _found(repo, first.id, "knowledge", "boiler") == ["Boiler pressure: 1.5 bar."]
        assert await _found(repo, second.id, "knowledge", "boiler") == []
        await _said(repo, second.id, ["Biscuit again"])  # the new triggers index it
        found = await _found(repo, second.id, "memory", "Biscuit")
        assert found == ["Biscuit again", "Biscuit is a cat here."]
    finally:
        await repo.close()
        await engine.dispose()


async def _version(db_url: str) -> str:
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    await engine.dispose()
    return str(version)


async def test_0010_keeps_the_chunks_of_0009_and_goes_back(db_url: str) -> None:
    await _at_0009_with_chunks(db_url)
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(to("head"))
    await engine.dispose()
    await _searches_as_before(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(to("0009", down=True))
            # 0009's index again, rebuilt from the chunks: its own MATCH (text only) on SQLite,
            # to_tsvector without the scope lexeme on PostgreSQL.
            if engine.dialect.name == "sqlite":
                query = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'biscuit'"
            else:
                query = "SELECT count(*) FROM chunks WHERE tsv @@ 'biscuit'::tsquery"
            assert (await conn.execute(text(query))).scalar() == 3
            await conn.execute(text("DELETE FROM chunks WHERE text = 'Biscuit again'"))
            assert (await conn.execute(text(query))).scalar() == 2  # its triggers too
    finally:
        await engine.dispose()


async def test_an_upgrade_killed_at_any_statement_is_completed_by_the_next(
    db_url: str,
) -> None:
    await _at_0009_with_chunks(db_url)
    kills = 0
    for kill_at in range(1, 60):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.kill_between", db_url, "upgrade", str(kill_at),
            cwd=REPO, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await child.communicate()
        if child.returncode == 0:
            break
        assert child.returncode == -9, stderr.decode()
        kills += 1
        assert await _version(db_url) in ("0009", "0010", "0011", "0012"), kill_at
    assert kills >= 5  # killed after each of 0010's statements (and later ones), then done
    assert await _version(db_url) == "0012"
    await _searches_as_before(db_url)
