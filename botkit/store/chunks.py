"""Retrieval's rows: chunks (stored messages and document parts) with their vectors, the
keyword search over them, and the queues of what is not indexed or embedded yet.

A scope is what one search may return: a chat's memory (its own messages before the kept
window, replies replaced by /retry excluded) or its knowledge (its documents and the bot's
documents for every chat).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.sql.elements import ColumnElement

from botkit.store.models import CHUNKS, DOCUMENTS, MESSAGES, MessageStatus, utc_now
from botkit.store.writer import Writer

__all__ = ["ChunkText", "Chunks", "NewChunk", "Source", "keyword_terms"]

Source = Literal["memory", "knowledge"]

# Messages that stay what the chat said: recalled once they leave the window.
_RECALLED = (MessageStatus.COMPLETE, MessageStatus.INTERRUPTED)
_MAX_TERMS = 32
# Words too common to tell chunks apart: a chunk that shares only these with a message is not
# relevant to it (English only; in other languages BM25's weighting is what discounts them).
_STOPWORD_TEXT = (
    "a about above after again all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from "
    "further had has have having he her here hers herself him himself his how i if in "
    "into is it its itself just me more most my myself no nor not now of off on once only "
    "or other our ours ourselves out over own same she should so some such than that the "
    "their theirs them themselves then there these they this those through to too under "
    "until up very was we were what when where which while who whom why will with would "
    "you your yours yourself yourselves"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# SQLite's FTS5 table over chunks.text and each chunk's scope (migration 0010), for joins.
_FTS = table("chunks_fts", column("rowid"))


def keyword_terms(query: str) -> list[str]:
    """The words of query a keyword search looks for: letters and digits only (so nothing in
    them is FTS5 or tsquery syntax), lower case, two characters or more, not a stop word,
    first 32 distinct."""
    terms: list[str] = []
    for word in re.findall(r"\w+", query.lower()):
        if len(word) > 1 and word not in _STOPWORDS and word not in terms:
            terms.append(word)
    return terms[:_MAX_TERMS]


def _scope_tokens(chat_id: int, source: Source) -> list[str]:
    """The keyword index's scope tokens of what a search may return (migration 0010): a
    chat's messages, or its documents and those of every chat."""
    return [f"m{chat_id}"] if source == "memory" else [f"d{chat_id}", "d0"]


def _recalled() -> ColumnElement[bool]:
    """A chunk's message is one memory recalls: complete or interrupted, not replaced."""
    return exists().where(
        MESSAGES.c.id == CHUNKS.c.message_id,
        MESSAGES.c.status.in_(_RECALLED),
        MESSAGES.c.replaces.is_(None),
    )


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk about to be stored."""

    chat_id: int | None
    text: str
    tokens: int
    message_id: int | None = None
    document_id: int | None = None
    seq: int = 0
    page: int | None = None
    author: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChunkText:
    """A chunk as retrieval quotes it: where it comes from, when and by whom."""

    id: int
    text: str
    author: str | None
    created_at: datetime
    message_id: int | None
    document_id: int | None
    title: str | None  # the document's
    page: int | None
    seq: int


class Chunks:
    """Reads and writes of chunks, on the store's writer."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._dialect = writer.engine.dialect.name

    def _scope(
        self, chat_id: int, source: Source, before: int | None, *, checked: bool = True
    ) -> ColumnElement[bool]:
        """The rows one search may return (before: memory only, the kept window's first id).
        checked=False leaves out the check of each message's status (a reply that /retry
        replaced is not recalled): an index range scan, for the vector side, which checks
        the few it returns (texts) instead of every row of the scope."""
        c = CHUNKS.c
        if source == "knowledge":
            return and_(c.document_id.is_not(None), or_(c.chat_id == chat_id, c.chat_id.is_(None)))
        condition = and_(c.chat_id == chat_id, c.message_id.is_not(None))
        if checked:
            condition = and_(condition, _recalled())
        if before is not None:
            condition = and_(condition, c.message_id < before)
        return condition

    async def keyword(
        self, chat_id: int, source: Source, query: str, limit: int, before: int | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, score) of the best keyword matches, best first: any of the query's words
        (BM25 on SQLite, ts_rank_cd on PostgreSQL; higher is better on both)."""
        terms = keyword_terms(query)
        if not terms:
            return []
        scope = self._scope(chat_id, source, before)
        tokens = _scope_tokens(chat_id, source)
        if self._dialect == "sqlite":
            # The scope column weighs 0: its token is in every row searched.
            score = func.bm25(literal_column("chunks_fts"), 1.0, 0.0)  # lower is better
            match = f"scope : ({' OR '.join(tokens)}) AND text : ({' OR '.join(terms)})"
            statement = (
                select(CHUNKS.c.id, score)
                .select_from(_FTS.join(CHUNKS, CHUNKS.c.id == _FTS.c.rowid))
                .where(literal_column("chunks_fts").op("MATCH")(match), scope)
                .order_by(score)
                .limit(limit)
            )
            rows = await self._writer.read(statement)
            return [(int(row[0]), -float(row[1])) for row in rows]
        words = func.to_tsquery(literal_column("'simple'"), " | ".join(terms))
        # Quoted lexemes: '@m5' as it is, where to_tsquery would split it at the '@'.
        in_scope = cast(" | ".join(f"'@{t}'" for t in tokens), TSQUERY)
        tsv: ColumnElement[Any] = literal_column("chunks.tsv")
        score = func.ts_rank_cd(tsv, words)
        statement = (
            select(CHUNKS.c.id, score)
            .where(tsv.op("@@")(words.op("&&")(in_scope)), scope)
            .order_by(score.desc())
            .limit(limit)
        )
        rows = await self._writer.read(statement)
        return [(int(row[0]), float(row[1])) for row in rows]

    async def vectors(
        self, chat_id: int, source: Source, embedder: str, after: int = 0
    ) -> list[tuple[int, int | None, bytes]]:
        """(chunk id, message id, vector) of a scope's chunks embedded by embedder, with id
        above after (memory: all of the chat's recalled messages; the caller filters by the
        window)."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(c.id, c.message_id, c.vector)
            .where(
                self._scope(chat_id, source, None, checked=False),
                c.embedder == embedder,
                c.id > after,
            )
            .order_by(c.id)
        )
        return [(int(r[0]), r[1], bytes(r[2])) for r in rows]

    async def signature(self, chat_id: int, source: Source, embedder: str) -> tuple[int, int]:
        """(count, newest id) of a scope's embedded chunks: a cached matrix is still current
        while this is unchanged (chunks are added and deleted, never rewritten in place,
        except a re-embedding, which changes the count of those with this embedder)."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(func.count(), func.coalesce(func.max(c.id), 0)).where(
                self._scope(chat_id, source, None, checked=False), c.embedder == embedder
            )
        )
        return int(rows[0][0]), int(rows[0][1])

    async def texts(self, ids: Sequence[int]) -> dict[int, ChunkText]:
        """The chunks by id, with their document's title; a message's only while it is
        recalled (not a reply that /retry replaced, nor one being generated)."""
        if not ids:
            return {}
        c = CHUNKS.c
        rows = await self._writer.read(
            select(
                c.id,
                c.text,
                c.author,
                c.created_at,
                c.message_id,
                c.document_id,
                DOCUMENTS.c.title,
                c.page,
                c.seq,
            )
            .select_from(CHUNKS.outerjoin(DOCUMENTS, DOCUMENTS.c.id == c.document_id))
            .where(c.id.in_(list(ids)), or_(c.message_id.is_(None), _recalled()))
        )
        return {int(r[0]): ChunkText(*r) for r in rows}

    async def unindexed_messages(self, after: int, limit: int) -> list[Any]:
        """Recalled messages with id > after that have no chunk yet, oldest first:
        (id, chat id, role, author, content, created_at)."""
        m = MESSAGES.c
        return await self._writer.read(
            select(m.id, m.chat_id, m.role, m.author, m.content, m.created_at)
            .where(
                m.id > after,
                m.status.in_(_RECALLED),
                m.replaces.is_(None),
                m.content != "",
                m.tool.is_(None),  # a tool round's calls and results are not recalled
                ~exists().where(CHUNKS.c.message_id == m.id),
            )
            .order_by(m.id)
            .limit(limit)
        )

    async def oldest_generating(self, after: int) -> int | None:
        """The first id after `after` of a reply still being generated (indexed once done)."""
        m = MESSAGES.c
        rows = await self._writer.read(
            select(func.min(m.id)).where(m.status == MessageStatus.GENERATING, m.id > after)
        )
        return None if rows[0][0] is None else int(rows[0][0])

    async def add(self, chunks: Sequence[NewChunk]) -> int:
        """Store chunks in one transaction; a message already indexed (by another process) is
        skipped. Returns how many were stored."""
        if not chunks:
            return 0
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        statement = dialect.insert(CHUNKS).on_conflict_do_nothing(index_elements=["message_id"])
        async with self._writer.transaction() as conn:
            result = await conn.execute(statement, [self.values(c) for c in chunks])
        return int(result.rowcount or 0)

    @staticmethod
    def values(chunk: NewChunk) -> dict[str, Any]:
        """The chunk as an INSERT's parameters."""
        values: dict[str, Any] = {
            "chat_id": chunk.chat_id, "text": chunk.text, "tokens": chunk.tokens,
            "message_id": chunk.message_id, "document_id": chunk.document_id, "seq": chunk.seq,
            "page": chunk.page, "author": chunk.author, "embedder": None, "vector": None,
        }  # fmt: skip
        values["created_at"] = chunk.created_at or utc_now()
        return values

    async def unembedded(self, embedder: str, limit: int) -> list[tuple[int, str]]:
        """(id, text) of chunks without a vector from embedder, oldest first."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(c.id, c.text)
            .where(or_(c.embedder.is_(None), c.embedder != embedder))
            .order_by(c.id)
            .limit(limit)
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def count_unembedded(self, embedder: str) -> tuple[int, int]:
        """(chunks without a vector from embedder, all chunks): re-indexing's progress."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(
                func.count().filter(or_(c.embedder.is_(None), c.embedder != embedder)),
                func.count(),
            )
        )
        return int(rows[0][0]), int(rows[0][1])

    async def set_vectors(self, embedder: str, vectors: Sequence[tuple[int, bytes]]) -> None:
        """Store vectors by chunk id (a chunk deleted meanwhile is skipped)."""
        if not vectors:
            return
        statement = (
            update(CHUNKS)
            .where(CHUNKS.c.id == bindparam("chunk"))
            .values(embedder=embedder, vector=bindparam("blob"))
        )
        async with self._writer.transaction() as conn:  # one executemany
            await conn.execute(statement, [{"chunk": i, "blob": v} for i, v in vectors])

    async def count(self, chat_id: int, source: Source) -> tuple[int, int]:
        """(chunks, embedded chunks) in a chat's scope (memory: all its recalled messages)."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(func.count(), func.count(c.vector)).where(self._scope(chat_id, source, None))
        )
        return int(rows[0][0]), int(rows[0][1])

    async def has_memory_before(self, chat_id: int, before: int) -> bool:
        """Whether the chat has message chunks before a message id (one index probe)."""
        c = CHUNKS.c
        rows = await self._writer.read(
            select(c.id)
            .where(c.chat_id == chat_id, c.message_id.is_not(None), c.message_id < before)
            .limit(1)
        )
        return bool(rows)

    async def forget_memory(self, chat_id: int) -> None:
        """Drop a chat's message chunks (its messages stay); they are indexed again later."""
        async with self._writer.transaction() as conn:
            await conn.execute(
                delete(CHUNKS).where(CHUNKS.c.chat_id == chat_id, CHUNKS.c.message_id.is_not(None))
            )
