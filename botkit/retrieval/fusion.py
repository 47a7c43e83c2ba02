"""Reciprocal rank fusion: one ranking from the keyword ranking and the vector ranking.

RRF (Cormack, Clarke and Büttcher, SIGIR 2009) scores an item 1/(k + rank) in each list it is
in and sums: it needs no calibration between BM25 scores and cosines, which live on unrelated
scales, and an item high in either list comes up. k = 60 is the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Hit", "fuse"]


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by a search: its place and score in each ranking, and fused."""

    chunk_id: int
    keyword_rank: int | None  # 1-based; None: not among the keyword matches
    keyword_score: float | None
    vector_rank: int | None
    similarity: float | None  # cosine with the query
    score: float  # fused


def fuse(
    keyword: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    k: int = 60,
) -> list[Hit]:
    """Hits from both rankings (each best first: (chunk id, score)), best fused first; ties
    go to the older chunk (the smaller id), so a ranking is the same on every run."""
    found: dict[int, dict[str, float | int]] = {}
    for rank, (chunk_id, score) in enumerate(keyword, start=1):
        found.setdefault(chunk_id, {})
        found[chunk_id].update(keyword_rank=rank, keyword_score=score)
    for rank, (chunk_id, similarity) in enumerate(vector, start=1):
        found.setdefault(chunk_id, {})
        found[chunk_id].update(vector_rank=rank, similarity=similarity)
    hits = []
    for chunk_id, parts in found.items():
        kr, vr = parts.get("keyword_rank"), parts.get("vector_rank")
        score = (1 / (k + kr) if kr else 0.0) + (1 / (k + vr) if vr else 0.0)
        hits.append(
            Hit(
                chunk_id,
                int(kr) if kr else None,
                parts.get("keyword_score"),
                int(vr) if vr else None,
                parts.get("similarity"),
                score,
            )
        )
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits
