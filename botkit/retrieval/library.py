"""A chat's documents: a file read, cut into chunks and stored whole, or refused with a reason.

The order makes a refusal cost nothing: the declared size is checked before the file is
fetched, the format and the text before anything is written, the chat's limits (documents,
chunks) before the one transaction that stores the document with all its chunks. Vectors
come after, from the indexer; until then the document is found by its keywords.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from botkit.config.retrieval import KnowledgeConfig
from botkit.retrieval.chunking import chunk_text
from botkit.retrieval.documents import DocumentLimits, check_size, read_document
from botkit.retrieval.embed_checks import estimate_tokens
from botkit.retrieval.refusal import DocumentRefused
from botkit.retrieval.service import Retrieval
from botkit.store.chunks import NewChunk
from botkit.store.documents import DocumentInfo, NewDocument
from botkit.store.repository import Repository

__all__ = ["DocumentRefused", "Library"]


class Library:
    """Adds, lists and removes documents for a chat (or for every chat of the bot)."""

    def __init__(
        self, config: KnowledgeConfig, retrieval: Retrieval, store: Callable[[], Repository]
    ) -> None:
        self._config = config
        self._retrieval = retrieval
        self._store = store
        self.limits = DocumentLimits(
            max_bytes=config.max_file_bytes,
            max_pages=config.max_pages,
            timeout=config.read_timeout,
        )
        self._adding = asyncio.Lock()  # limits are checked and used in one step
        # Files read at once: each PDF or HTML file is parsed in a child process that may
        # take up to a GiB; more uploads wait their turn.
        self._reading = asyncio.Semaphore(2)

    def check_size(self, name: str, size: int | None) -> None:
        """Refuse a file by its declared size before it is fetched (DocumentRefused)."""
        if size is not None:
            check_size(name, size, self.limits)

    def _count(self) -> Callable[[str], int]:
        embedder = self._retrieval.live_embedder
        return embedder.count_tokens if embedder is not None else estimate_tokens

    async def add(
        self, chat_id: int | None, name: str, data: bytes, mime: str | None = None
    ) -> DocumentInfo:
        """Read and store a document for chat_id (None: every chat of the bot), whole, or
        raise DocumentRefused saying why; nothing is stored then."""
        store = self._store()
        async with self._reading:
            document = await read_document(name, data, self.limits, mime)
        digest = hashlib.sha256(data).hexdigest()
        size, overlap = self._config.chunk_tokens, self._config.chunk_overlap
        embedder = self._retrieval.live_embedder
        if embedder is not None:
            size = min(size, embedder.max_tokens)
            overlap = min(overlap, size // 2)
        count = self._count()
        # Off the event loop: a long document takes a while to count (the tokenizer is the
        # embedder's own, which its worker thread also uses; counting is read-only).
        chunks = await asyncio.to_thread(
            chunk_text, document.text, count, size, overlap, document.page_starts
        )
        if not chunks:
            raise DocumentRefused(f"{document.title} has no text to index.")
        async with self._adding:
            same = await store.documents.find(chat_id, digest)
            if same is not None:
                raise DocumentRefused(
                    f"{document.title} is already here, as {same.title} "
                    f"(added {same.created_at:%Y-%m-%d})."
                )
            scope = "this chat" if chat_id is not None else "the bot (for every chat)"
            present = await store.documents.of_chat(chat_id) if chat_id is not None else []
            own = [d for d in present if d.chat_id == chat_id]
            if chat_id is not None and len(own) >= self._config.max_documents:
                raise DocumentRefused(
                    f"{scope} has {len(own)} documents, the most allowed "
                    f"({self._config.max_documents}): /docs remove N or /docs clear first."
                )
            held = await store.documents.chunk_count(chat_id)
            if held + len(chunks) > self._config.max_chunks:
                raise DocumentRefused(
                    f"{document.title} makes {len(chunks):,} chunks and {scope} holds "
                    f"{held:,}; the limit is {self._config.max_chunks:,} chunks. Remove a "
                    "document or send a shorter one."
                )
            info = await store.documents.add(
                NewDocument(
                    chat_id, document.title, document.kind, len(data), document.pages, digest
                ),
                [
                    NewChunk(chat_id, c.text, c.tokens, seq=i, page=c.page)
                    for i, c in enumerate(chunks)
                ],
            )
        self._retrieval.documents_changed(chat_id)
        return info

    async def remove(self, chat_id: int, number: int) -> DocumentInfo:
        """Forget the chat's document number (as /docs lists them, from 1)."""
        documents = await self._store().documents.of_chat(chat_id)
        if not documents:
            raise DocumentRefused("this chat has no documents (/docs add with a file adds one)")
        if not 1 <= number <= len(documents):
            raise DocumentRefused(
                f"there is no document {number}: this chat has {len(documents)} "
                f"(1 to {len(documents)}; /docs lists them)"
            )
        document = documents[number - 1]
        if document.chat_id is None:
            raise DocumentRefused(
                f"{document.title} is the bot's, for every chat: remove it with "
                "`botkit docs remove` on the bot's machine"
            )
        await self._store().documents.remove(document.id)
        self._retrieval.documents_changed(chat_id)
        return document

    async def clear(self, chat_id: int) -> int:
        """Forget the chat's own documents; how many."""
        removed = await self._store().documents.clear(chat_id)
        self._retrieval.documents_changed(chat_id)
        return removed
