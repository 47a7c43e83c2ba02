"""The documents chats were given: each stored with all its chunks in one transaction, so a
document is there whole or not at all; listed, removed and cleared per chat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.sql.elements import ColumnElement

from botkit.store.chunks import Chunks, NewChunk
from botkit.store.models import CHUNKS, DOCUMENTS, utc_now
from botkit.store.writer import Writer

__all__ = ["DocumentInfo", "Documents", "NewDocument"]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document about to be stored (its chunks go beside it)."""

    chat_id: int | None  # None: every chat of the bot
    title: str
    kind: str
    size: int
    pages: int | None
    sha256: str


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A stored document, as /docs lists it."""

    id: int
    chat_id: int | None
    title: str
    kind: str
    size: int
    pages: int | None
    chunks: int
    tokens: int
    created_at: datetime


class Documents:
    """Reads and writes of documents, on the store's writer."""

    def __init__(self, writer: Writer, chunks: Chunks) -> None:
        self._writer = writer
        self._chunks = chunks

    async def add(self, document: NewDocument, chunks: Sequence[NewChunk]) -> DocumentInfo:
        """Store a document and its chunks in one transaction."""
        now = utc_now()
        tokens = sum(c.tokens for c in chunks)
        async with self._writer.transaction() as conn:
            result = await conn.execute(
                insert(DOCUMENTS)
                .values(
                    chat_id=document.chat_id,
                    title=document.title,
                    kind=document.kind,
                    size=document.size,
                    pages=document.pages,
                    chunks=len(chunks),
                    tokens=tokens,
                    sha256=document.sha256,
                    created_at=now,
                )
                .returning(DOCUMENTS.c.id)
            )
            document_id = int(result.scalar_one())
            rows = [
                replace(c, chat_id=document.chat_id, document_id=document_id, created_at=now)
                for c in chunks
            ]
            await conn.execute(insert(CHUNKS), [Chunks.values(c) for c in rows])
        return DocumentInfo(
            document_id, document.chat_id, document.title, document.kind, document.size,
            document.pages, len(chunks), tokens, now,
        )  # fmt: skip

    async def of_chat(self, chat_id: int) -> list[DocumentInfo]:
        """The chat's documents and the bot's documents for every chat, oldest first."""
        d = DOCUMENTS.c
        return await self._where(or_(d.chat_id == chat_id, d.chat_id.is_(None)))

    async def every(self) -> list[DocumentInfo]:
        """All documents, of every chat and the bot's, oldest first."""
        return await self._where()

    async def get(self, document_id: int) -> DocumentInfo | None:
        """The document with this id, if there is one."""
        found = await self._where(DOCUMENTS.c.id == document_id)
        return found[0] if found else None

    async def find(self, chat_id: int | None, sha256: str) -> DocumentInfo | None:
        """The document with these bytes in this scope (chat's own or for every chat)."""
        d = DOCUMENTS.c
        scope = (
            d.chat_id.is_(None)
            if chat_id is None
            else or_(d.chat_id == chat_id, d.chat_id.is_(None))
        )
        found = await self._where(scope, d.sha256 == sha256)
        return found[0] if found else None

    async def _where(self, *conditions: ColumnElement[bool]) -> list[DocumentInfo]:
        d = DOCUMENTS.c
        rows = await self._writer.read(
            select(
                d.id,
                d.chat_id,
                d.title,
                d.kind,
                d.size,
                d.pages,
                d.chunks,
                d.tokens,
                d.created_at,
            )
            .where(*conditions)
            .order_by(d.id)
        )
        return [DocumentInfo(*row) for row in rows]

    async def chunk_count(self, chat_id: int | None) -> int:
        """Chunks of the chat's own documents (None: of the bot's documents for every chat)."""
        d = DOCUMENTS.c
        scope = d.chat_id.is_(None) if chat_id is None else d.chat_id == chat_id
        rows = await self._writer.read(select(func.coalesce(func.sum(d.chunks), 0)).where(scope))
        return int(rows[0][0])

    async def remove(self, document_id: int) -> None:
        """Forget a document and its chunks."""
        async with self._writer.transaction() as conn:
            await conn.execute(delete(DOCUMENTS).where(DOCUMENTS.c.id == document_id))

    async def clear(self, chat_id: int) -> int:
        """Forget the chat's own documents (not the bot's for every chat); how many."""
        async with self._writer.transaction() as conn:
            result = await conn.execute(delete(DOCUMENTS).where(DOCUMENTS.c.chat_id == chat_id))
        return int(result.rowcount or 0)
