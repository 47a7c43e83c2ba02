"""Indexing in the background: stored messages become memory chunks, and chunks get vectors.

A turn only wakes the indexer after its messages are stored; the indexer then works in
batches ([retrieval] index_batch) off the reply's path: a turn never waits for the embedder
to index its own messages. A failure (the embedder down, the database busy) is logged and
retried with a growing pause; the bot goes on, and recall works on what is indexed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from botkit.backends.base import Role
from botkit.retrieval.embed_checks import estimate_tokens
from botkit.retrieval.embedder import Embedder, EmbedderError
from botkit.retrieval.vectors import to_blob
from botkit.store.chunks import Chunks, NewChunk

__all__ = ["Indexer", "Progress"]

log = logging.getLogger(__name__)

# (chunks embedded so far, chunks that were waiting): for progress bars.
Progress = Callable[[int, int], None]

_PERIOD = 30.0  # seconds between looks when nothing wakes the indexer (other processes' rows)
_MOST_PAUSE = 300.0
# Once woken, the indexer waits for a quiet moment (no turn stored for this long), at most
# _MOST_QUIET: a chat's next turn, often seconds away, does not share the CPU and the
# embedder with indexing, and what waits is indexed in one batch.
_QUIET = 1.0
_MOST_QUIET = 10.0
# Texts per embedder call while indexing: a turn's query vector waits behind at most one such
# call on the embedder's thread (about 8 × 6 ms for MiniLM on 2 cores), not a whole batch.
_SLICE = 8


class Indexer:
    """Indexes messages and embeds chunks until cancelled (run), or until done (drain)."""

    def __init__(self, chunks: Chunks, embedder: Embedder | None, batch: int) -> None:
        self._chunks = chunks
        self._embedder = embedder
        self._batch = batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time, whoever runs it
        # Every recalled message up to this id has its chunk (messages after it are looked
        # for); it stops below a reply still generating, which is indexed once it ends.
        self._mark = 0
        self.failure: str | None = None  # the last batch's error, until one succeeds
        self.idle = asyncio.Event()  # set while run() waits to be woken (for observers)

    def wake(self) -> None:
        """Messages were stored: index them soon."""
        self._wake.set()

    def count(self, text: str) -> int:
        """Tokens of text by the embedder's tokenizer (an estimate without one)."""
        if self._embedder is None:
            return estimate_tokens(text)
        return self._embedder.count_tokens(text)

    async def run(self) -> None:
        """Index whatever is waiting, then wait to be woken (or look again every 30 s)."""
        failures = 0
        while True:
            try:
                await self.drain()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.failure = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, EmbedderError):
                    log.warning("indexing paused, the embedder failed: %s", exc)
                else:
                    log.exception("indexing failed; retrying")
            pause = _PERIOD if not failures else min(_MOST_PAUSE, 2.0**failures)
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 a cancel that arrives as the
            # event is set is swallowed by wait_for, and close() would wait for ever.
            self.idle.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            self.idle.clear()
            await self._quiet()

    async def _quiet(self) -> None:
        """Return once no turn was stored for _QUIET seconds, or after _MOST_QUIET."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_MOST_QUIET):
                while True:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(_QUIET):
                            await self._wake.wait()
                    except TimeoutError:
                        return

    async def drain(self, progress: Progress | None = None) -> None:
        """Index messages and embed chunks until none is waiting (raises what fails)."""
        while await self._index_messages():
            pass
        if self._embedder is None:
            return
        waiting, _ = await self._chunks.count_unembedded(self._embedder.name)
        done = 0
        if waiting > self._batch:
            log.info("embedding %d chunks with %s", waiting, self._embedder.name)
        while True:
            embedded = await self._embed_batch()
            if not embedded:
                break
            done += embedded
            if progress is not None:
                progress(done, max(waiting, done))
            if waiting > self._batch and done % (self._batch * 16) < self._batch:
                log.info("embedded %d of %d chunks", done, waiting)
        self.failure = None

    async def _index_messages(self) -> int:
        """One batch of stored messages into chunks; how many were looked at."""
        async with self._lock:
            rows = await self._chunks.unindexed_messages(self._mark, self._batch)
            chunks = [
                NewChunk(
                    chat_id=chat_id,
                    text=content,
                    tokens=self.count(content),
                    message_id=message_id,
                    author=author or ("assistant" if role == Role.ASSISTANT else "user"),
                    created_at=created_at,
                )
                for message_id, chat_id, role, author, content, created_at in rows
            ]
            await self._chunks.add(chunks)
            if rows:
                newest = int(rows[-1][0])
                generating = await self._chunks.oldest_generating(self._mark)
                self._mark = newest if generating is None else min(newest, generating - 1)
            return len(rows) if len(rows) == self._batch else 0

    async def _embed_batch(self) -> int:
        """Vectors for one batch of chunks; how many."""
        assert self._embedder is not None
        async with self._lock:
            name = self._embedder.name
            rows = await self._chunks.unembedded(name, self._batch)
            if not rows:
                return 0
            texts = [text for _, text in rows]
            vectors = np.concatenate(
                [
                    await self._embedder.embed(texts[i : i + _SLICE])
                    for i in range(0, len(texts), _SLICE)
                ]
            )
            await self._chunks.set_vectors(
                name,
                [(chunk_id, to_blob(v)) for (chunk_id, _), v in zip(rows, vectors, strict=True)],
            )
            return len(rows)
