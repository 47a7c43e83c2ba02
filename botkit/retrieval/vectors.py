"""Exact vector search over a scope's chunks, from a matrix kept in memory.

Each scope's vectors (a chat's memory, its knowledge) are read from the database once and kept
as one float32 matrix, least recently used first out past `max_bytes`. A scope that grew is
brought up to date by reading only the new rows; one that shrank (a /reset, a removed
document) is read again. The score is a dot product, the cosine, since vectors are unit length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from botkit.store.chunks import Chunks, Source

__all__ = ["VectorSearch", "from_blob", "to_blob"]

_NO_MESSAGE = np.iinfo(np.int64).max  # a document chunk: never outside a window


def to_blob(vector: npt.NDArray[np.float32]) -> bytes:
    """A vector as stored (float32, little-endian)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> npt.NDArray[np.float32]:
    """A stored vector."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


@dataclass(slots=True)
class _Scope:
    count: int
    newest: int
    ids: npt.NDArray[np.int64]
    messages: npt.NDArray[np.int64]  # each chunk's message id (memory), for the window filter
    matrix: npt.NDArray[np.float32]

    @classmethod
    def of(cls, rows: list[tuple[int, int | None, bytes]], count: int, newest: int) -> _Scope:
        """A scope from (chunk id, message id, vector) rows."""
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        messages = np.array([_NO_MESSAGE if r[1] is None else r[1] for r in rows], np.int64)
        if not rows:
            return cls(count, newest, ids, messages, np.zeros((0, 0), dtype=np.float32))
        return cls(count, newest, ids, messages, np.stack([from_blob(r[2]) for r in rows]))

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
        )

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.messages.nbytes + self.matrix.nbytes)


class VectorSearch:
    """Exact top-k by cosine, per scope, on matrices cached within max_bytes."""

    def __init__(self, chunks: Chunks, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._chunks = chunks
        self._scopes: LRUCache[tuple[int, Source, str], _Scope] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda scope: max(1, scope.nbytes)
        )

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
        self._scopes[key] = scope
        return scope

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
        similarity = scope.matrix @ query.astype(np.float32)
        if before is not None:
            similarity = np.where(scope.messages < before, similarity, -np.inf)
        limit = min(limit, len(similarity))
        top = np.argpartition(-similarity, limit - 1)[:limit]
        top = top[np.lexsort((scope.ids[top], -similarity[top]))]
        return [
            (int(scope.ids[i]), float(similarity[i])) for i in top if np.isfinite(similarity[i])
        ]

    def forget(self, chat_id: int) -> None:
        """Drop a chat's cached matrices (after /reset)."""
        for key in [k for k in self._scopes if k[0] == chat_id]:
            self._scopes.pop(key, None)
