"""Vector search over a scope's chunks, from a matrix kept in memory: exact while the scope is
small, through an approximate index (botkit.retrieval.ann) above [retrieval] index_threshold.

Each scope's vectors (a chat's memory, its knowledge) are read from the database once and kept
as one float32 matrix, least recently used first out past `max_bytes`. A scope that grew is
brought up to date by reading only the new rows; one that shrank (a /reset, a removed
document) is read again. The score is a dot product, the cosine, since vectors are unit length.

A large scope's index is built, extended and rebuilt in a thread, never on a turn's path:
until it is ready, and for the rows added since, the search is exact. Its candidates are
re-ranked by their exact cosine, so what /sources shows is the true similarity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from botkit.retrieval.ann import AnnIndex
from botkit.store.chunks import Source

__all__ = ["VectorRows", "VectorSearch", "from_blob", "to_blob"]

log = logging.getLogger(__name__)

_NO_MESSAGE = np.iinfo(np.int64).max  # a document chunk: never outside a window
_OVERFETCH = 4  # index candidates per result, re-ranked exactly (8-bit codes blur the order)
_GROWTH = 2  # an index is trained again once its scope is this many times what it was built on

# Builds a scope's index from its matrix (an argument so tests can make it fail).
IndexBuilder = Callable[[npt.NDArray[np.float32]], AnnIndex]


class VectorRows(Protocol):
    """Where a scope's vectors are read from: the store's chunks (botkit.store.chunks)."""

    async def signature(self, chat_id: int, source: Source, embedder: str) -> tuple[int, int]:
        """(count, newest id) of the scope's vectors."""

    async def vectors(
        self, chat_id: int, source: Source, embedder: str, after: int = 0
    ) -> list[tuple[int, int | None, bytes]]:
        """(chunk id, message id, vector) of the scope's rows with id above after."""


def to_blob(vector: npt.NDArray[np.float32]) -> bytes:
    """A vector as stored (float32, little-endian)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> npt.NDArray[np.float32]:
    """A stored vector."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


@dataclass(slots=True)
class _Ann:
    """A scope's approximate index and its upkeep, shared by the scope and its extensions
    (which keep its first rows): the index covers the first `index.count` rows of each."""

    index: AnnIndex | None = None
    task: asyncio.Task[None] | None = None
    failure: str | None = None  # the build failed: exact search until the scope is read again


@dataclass(slots=True)
class _Scope:
    count: int
    newest: int
    ids: npt.NDArray[np.int64]
    messages: npt.NDArray[np.int64]  # each chunk's message id (memory), for the window filter
    matrix: npt.NDArray[np.float32]
    ann: _Ann = field(default_factory=_Ann)

    @classmethod
    def of(cls, rows: list[tuple[int, int | None, bytes]], count: int, newest: int) -> _Scope:
        """A scope from (chunk id, message id, vector) rows. Rows whose length is not the
        newest row's are left out: the embedder changed and they wait to be embedded again."""
        if rows:
            size = len(rows[-1][2])
            rows = [r for r in rows if len(r[2]) == size]
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        messages = np.array([_NO_MESSAGE if r[1] is None else r[1] for r in rows], np.int64)
        if not rows:
            return cls(count, newest, ids, messages, np.zeros((0, 0), dtype=np.float32))
        joined = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4")
        matrix = joined.astype(np.float32).reshape(len(rows), -1)
        return cls(count, newest, ids, messages, matrix)

    def extended(self, added: _Scope) -> _Scope | None:
        """This scope with added's rows after its own; None if their lengths differ (the
        embedder changed dimension meanwhile: read the scope again)."""
        if len(self.ids) and len(added.ids) and self.matrix.shape[1] != added.matrix.shape[1]:
            return None
        matrix = np.concatenate([self.matrix, added.matrix]) if len(self.ids) else added.matrix
        return _Scope(
            added.count,
            added.newest,
            np.concatenate([self.ids, added.ids]),
            np.concatenate([self.messages, added.messages]),
            matrix,
            self.ann,
        )

    @property
    def nbytes(self) -> int:
        index = self.ann.index.nbytes if self.ann.index is not None else 0
        return int(self.ids.nbytes + self.messages.nbytes + self.matrix.nbytes + index)


def _nearest(
    scope: _Scope,
    index: AnnIndex | None,
    query: npt.NDArray[np.float32],
    limit: int,
    allowed: npt.NDArray[np.bool_] | None,
) -> list[tuple[int, float]]:
    """(chunk id, exact cosine) of the nearest allowed rows: all rows compared (no index), or
    the index's candidates and the rows added since it was last extended."""
    rows = len(scope.ids)
    if index is None:
        positions = None
        similarity = scope.matrix @ query
    else:
        covered = min(index.count, rows)  # before the search: an add may run meanwhile
        found = index.search(query, limit * _OVERFETCH, allowed)
        positions = np.concatenate([found[found < covered], np.arange(covered, rows)])
        similarity = scope.matrix[positions] @ query
    if allowed is not None:
        similarity = np.where(
            allowed if positions is None else allowed[positions], similarity, -np.inf
        )
    limit = min(limit, len(similarity))
    if not limit:
        return []
    top = np.argpartition(-similarity, limit - 1)[:limit]
    chosen = top if positions is None else positions[top]
    order = np.lexsort((scope.ids[chosen], -similarity[top]))
    return [
        (int(scope.ids[chosen[i]]), float(similarity[top[i]]))
        for i in order
        if np.isfinite(similarity[top[i]])
    ]


class VectorSearch:
    """Top-k by cosine, per scope, on matrices cached within max_bytes; scopes of threshold
    vectors or more also get an approximate index."""

    def __init__(
        self,
        chunks: VectorRows,
        max_bytes: int = 256 * 1024 * 1024,
        threshold: int = 20_000,
        build: IndexBuilder = AnnIndex,
    ) -> None:
        self._chunks = chunks
        self._threshold = threshold
        self._build = build
        self._scopes: LRUCache[tuple[int, Source, str], _Scope] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda scope: max(1, scope.nbytes)
        )
        self._oversize_warned: set[tuple[int, Source, str]] = set()
        self._upkeep: set[asyncio.Task[None]] = set()

    async def _scope(self, chat_id: int, source: Source, embedder: str) -> _Scope:
        key = (chat_id, source, embedder)
        count, newest = await self._chunks.signature(chat_id, source, embedder)
        cached = self._scopes.get(key)
        if cached is not None and (cached.count, cached.newest) == (count, newest):
            return cached
        scope = None
        if cached is not None and count > cached.count and newest > cached.newest:
            rows = await self._chunks.vectors(chat_id, source, embedder, after=cached.newest)
            added = _Scope.of(rows, count, newest)
            if cached.count + len(rows) == count:
                scope = cached.extended(added)
        if scope is None:
            rows = await self._chunks.vectors(chat_id, source, embedder, after=0)
            scope = _Scope.of(rows, count, newest)
        if scope.nbytes > self._scopes.maxsize:
            # Kept out of the cache, it is read again for each search, and never indexed.
            if key not in self._oversize_warned:
                self._oversize_warned.add(key)
                log.warning(
                    "the vectors of chat %d's %s (%d, %.0f MB) are more than [retrieval] "
                    "vector_cache_bytes: they are read again for every search; raise it",
                    chat_id, source, len(scope.ids), scope.nbytes / 1e6,
                )  # fmt: skip
            return scope
        self._scopes[key] = scope
        self._keep_up(scope)
        return scope

    def _keep_up(self, scope: _Scope) -> None:
        """Start building or extending the scope's index if it is large and behind."""
        ann = scope.ann
        if len(scope.ids) < self._threshold or ann.task is not None or ann.failure is not None:
            return
        if ann.index is not None and ann.index.count >= len(scope.ids):
            return
        ann.task = asyncio.create_task(self._index(scope), name="botkit-vector-index")
        self._upkeep.add(ann.task)
        ann.task.add_done_callback(self._upkeep.discard)

    async def _index(self, scope: _Scope) -> None:
        """Build (or train again, once grown) or extend scope's index, in a thread."""
        ann = scope.ann
        try:
            index = ann.index
            if index is None or len(scope.ids) > _GROWTH * index.trained_on:
                ann.index = await asyncio.to_thread(self._build, scope.matrix)
            else:
                await asyncio.to_thread(index.add, scope.matrix)
        except Exception as exc:
            ann.failure = f"{type(exc).__name__}: {exc}"
            log.exception("building a vector index failed; that scope's search stays exact")
        finally:
            ann.task = None

    async def indexed(self) -> None:
        """Wait until the index work started so far is done (tests, benchmarks)."""
        while self._upkeep:
            await asyncio.gather(*self._upkeep, return_exceptions=True)

    async def close(self) -> None:
        """Stop index work (a build already in its thread ends there, unused)."""
        for task in list(self._upkeep):
            task.cancel()
        await asyncio.gather(*self._upkeep, return_exceptions=True)

    async def search(
        self,
        chat_id: int,
        source: Source,
        embedder: str,
        query: npt.NDArray[np.float32],
        limit: int,
        before: int | None = None,
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the nearest chunks, nearest first (memory: only messages
        before the kept window's first id)."""
        scope = await self._scope(chat_id, source, embedder)
        if not len(scope.ids) or scope.matrix.shape[1] != query.shape[0]:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32)
        allowed = scope.messages < before if before is not None else None
        index = scope.ann.index
        if index is None and len(scope.ids) < self._threshold:
            return _nearest(scope, None, query, limit, allowed)
        # Large: in a thread, so the other chats' turns go on meanwhile.
        return await asyncio.to_thread(_nearest, scope, index, query, limit, allowed)

    def forget(self, chat_id: int) -> None:
        """Drop a chat's cached matrices (after /reset)."""
        for key in [k for k in self._scopes if k[0] == chat_id]:
            self._scopes.pop(key, None)
