"""One search of one scope: keyword matches and nearest vectors, fused, with their text.

What each candidate scored is kept (keyword rank and score, cosine, fused score) because
/sources shows it: the point is that a user can see why a passage was given to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from botkit.config.retrieval import RetrievalConfig
from botkit.retrieval.fusion import Hit, fuse
from botkit.retrieval.vectors import VectorSearch
from botkit.store.chunks import Chunks, ChunkText, Source

__all__ = ["Candidate", "Searcher"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A chunk a search found, with its scores; relevant: found by keywords, or by its vector
    with a cosine of at least [retrieval] min_similarity."""

    source: Source
    hit: Hit
    chunk: ChunkText
    relevant: bool


class Searcher:
    """Keyword + vector search over the store's chunks, fused by reciprocal rank."""

    def __init__(self, chunks: Chunks, vectors: VectorSearch, config: RetrievalConfig) -> None:
        self._chunks = chunks
        self._vectors = vectors
        self._config = config

    async def search(
        self,
        chat_id: int,
        source: Source,
        query: str,
        vector: npt.NDArray[np.float32] | None,
        embedder: str | None,
        before: int | None = None,
    ) -> list[Candidate]:
        """The scope's candidates for query, best fused first (before: memory only, the kept
        window's first message id). vector None: keywords only."""
        limit = self._config.candidates
        keyword = await self._chunks.keyword(chat_id, source, query, limit, before)
        near: list[tuple[int, float]] = []
        if vector is not None and embedder is not None:
            near = await self._vectors.search(chat_id, source, embedder, vector, limit, before)
        hits = fuse(keyword, near, self._config.rrf_k)
        texts = await self._chunks.texts([h.chunk_id for h in hits])
        least = self._config.min_similarity
        return [
            Candidate(
                source,
                hit,
                texts[hit.chunk_id],
                hit.keyword_rank is not None
                or (hit.similarity is not None and hit.similarity >= least),
            )
            for hit in hits
            if hit.chunk_id in texts  # deleted since (a /reset, a removed document)
        ]
