"""Vector search on a large scope: the approximate index gives what exact search gives, keeps
the window filter, follows the scope as it grows and shrinks, and a failing build leaves exact
search answering. Small sizes, with a low threshold so the index path runs."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import delete, insert, select

from botkit.core.events import ChatKey
from botkit.retrieval.ann import AnnIndex
from botkit.retrieval.vectors import VectorSearch, to_blob
from botkit.store.models import CHUNKS, MESSAGES, MessageStatus
from botkit.store.repository import Repository

THRESHOLD = 200
DIMENSIONS = 32
Matrix = npt.NDArray[np.float32]


def clustered(count: int, seed: int, dimensions: int = DIMENSIONS) -> Matrix:
    """Unit vectors around 12 directions, as texts about a few topics are."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((12, dimensions))
    rows = centers[rng.integers(0, 12, count)] + 0.8 * rng.standard_normal((count, dimensions))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


class Builds:
    """AnnIndex, counting the builds and keeping the last; fails while `fail` is set."""

    def __init__(self) -> None:
        self.count = 0
        self.last: AnnIndex | None = None
        self.fail: str | None = None

    def __call__(self, matrix: Matrix) -> AnnIndex:
        self.count += 1
        if self.fail:
            raise RuntimeError(self.fail)
        self.last = AnnIndex(matrix)
        return self.last


async def remember(repo: Repository, chat_id: int, vectors: Matrix, name: str = "v") -> list[int]:
    """Messages of the chat with their chunks already embedded; their message ids."""
    async with repo.transaction() as conn:
        first = (await conn.execute(insert(MESSAGES).returning(MESSAGES.c.id), [
            {"chat_id": chat_id, "role": "user", "author": "a", "content": f"m{i}",
             "token_count": 2, "tokenizer_id": "t", "status": MessageStatus.COMPLETE}
            for i in range(len(vectors))
        ])).scalars().all()  # fmt: skip
        await conn.execute(insert(CHUNKS), [
            {"chat_id": chat_id, "message_id": m, "text": f"m{i}", "tokens": 2,
             "embedder": name, "vector": to_blob(v)}
            for i, (m, v) in enumerate(zip(first, vectors, strict=True))
        ])  # fmt: skip
    return [int(m) for m in first]


async def a_chat(repo: Repository) -> int:
    return (await repo.chat(ChatKey("console", "big"))).id


async def nearest(search: VectorSearch, chat_id: int, query: Matrix, **kw: int) -> list[int]:
    return [c for c, _ in await search.search(chat_id, "memory", "v", query, 10, **kw)]


async def test_the_index_finds_what_exact_search_finds(store: Repository) -> None:
    chat_id = await a_chat(store)
    await remember(store, chat_id, clustered(1500, 1))
    builds = Builds()
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=builds)
    exact = VectorSearch(store.chunks, threshold=10**9)
    await approximate.search(chat_id, "memory", "v", clustered(1, 2)[0], 10)
    await approximate.indexed()
    assert builds.count == 1
    assert builds.last is not None
    assert builds.last.count == 1500
    found = 0
    for query in clustered(30, 3):
        truth = set(await nearest(exact, chat_id, query))
        found += len(truth & set(await nearest(approximate, chat_id, query)))
    assert found / 300 >= 0.95
    # The cosines given are exact, not the index's 8-bit estimates.
    query = clustered(1, 4)[0]
    given = await approximate.search(chat_id, "memory", "v", query, 3)
    expected = await exact.search(chat_id, "memory", "v", query, 3)
    assert [c for c, _ in given] == [c for c, _ in expected]
    assert [s for _, s in given] == pytest.approx([s for _, s in expected], abs=1e-5)


async def test_the_window_filter_holds_with_the_index(store: Repository) -> None:
    chat_id = await a_chat(store)
    vectors = clustered(1000, 5)
    messages = await remember(store, chat_id, vectors)
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=Builds())
    await approximate.search(chat_id, "memory", "v", vectors[0], 10)
    await approximate.indexed()
    before = messages[600]
    kept = set(messages[600:])
    for query in vectors[650:660]:  # each nearest to itself, inside the window
        found = await approximate.search(chat_id, "memory", "v", query, 10, before=before)
        assert len(found) == 10
        chunk_messages = await chunk_message_ids(store, [c for c, _ in found])
        assert not kept & chunk_messages


async def chunk_message_ids(repo: Repository, chunk_ids: list[int]) -> set[int]:
    rows = await repo.read(select(CHUNKS.c.message_id).where(CHUNKS.c.id.in_(chunk_ids)))
    return {int(r[0]) for r in rows}


async def test_added_chunks_are_found_at_once_and_added_to_the_index(store: Repository) -> None:
    chat_id = await a_chat(store)
    await remember(store, chat_id, clustered(800, 6))
    builds = Builds()
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=builds)
    await approximate.search(chat_id, "memory", "v", clustered(1, 7)[0], 10)
    await approximate.indexed()
    odd = np.zeros(DIMENSIONS, dtype=np.float32)
    odd[0] = 1.0
    await remember(store, chat_id, np.stack([odd] * 3))
    # Before the index has them: the rows added since are compared exactly.
    found = await approximate.search(chat_id, "memory", "v", odd, 3)
    assert [s for _, s in found] == pytest.approx([1.0, 1.0, 1.0])
    await approximate.indexed()
    assert builds.count == 1
    assert builds.last is not None
    assert builds.last.count == 803


async def test_a_deletion_rebuilds_the_index_without_the_deleted(store: Repository) -> None:
    chat_id = await a_chat(store)
    vectors = clustered(800, 8)
    messages = await remember(store, chat_id, vectors)
    builds = Builds()
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=builds)
    await approximate.search(chat_id, "memory", "v", vectors[0], 10)
    await approximate.indexed()
    gone = set(messages[:100])
    async with store.transaction() as conn:
        await conn.execute(delete(CHUNKS).where(CHUNKS.c.message_id.in_(gone)))
    found = await approximate.search(chat_id, "memory", "v", vectors[5], 10)
    await approximate.indexed()
    assert builds.count == 2
    assert builds.last is not None
    assert builds.last.count == 700
    for query in vectors[:20]:
        found = await approximate.search(chat_id, "memory", "v", query, 10)
        assert len(found) == 10
        assert not gone & await chunk_message_ids(store, [c for c, _ in found])


async def test_a_new_dimension_reads_the_scope_again(store: Repository) -> None:
    chat_id = await a_chat(store)
    await remember(store, chat_id, clustered(400, 9))
    builds = Builds()
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=builds)
    await approximate.search(chat_id, "memory", "v", clustered(1, 10)[0], 10)
    await approximate.indexed()
    # The embedder behind the name changed: its chunks come back with 16 dimensions.
    smaller = clustered(401, 11, dimensions=16)
    async with store.transaction() as conn:
        await conn.execute(CHUNKS.update().values(vector=to_blob(smaller[0])))
    await remember(store, chat_id, smaller[1:2])
    assert await approximate.search(chat_id, "memory", "v", clustered(1, 10)[0], 10) == []
    found = await approximate.search(chat_id, "memory", "v", smaller[1], 1)
    assert found[0][1] == pytest.approx(1.0)
    await approximate.indexed()
    assert builds.count == 2
    assert builds.last is not None
    assert builds.last.dimensions == 16


async def test_a_failing_build_leaves_exact_search_answering(
    store: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    chat_id = await a_chat(store)
    await remember(store, chat_id, clustered(600, 12))
    builds = Builds()
    builds.fail = "injected"
    approximate = VectorSearch(store.chunks, threshold=THRESHOLD, build=builds)
    exact = VectorSearch(store.chunks, threshold=10**9)
    query = clustered(1, 13)[0]
    with caplog.at_level(logging.ERROR):
        await approximate.search(chat_id, "memory", "v", query, 10)
        await approximate.indexed()
    assert "building a vector index failed" in caplog.text
    assert await approximate.search(chat_id, "memory", "v", query, 10) == (
        await exact.search(chat_id, "memory", "v", query, 10)
    )
    await approximate.indexed()
    assert builds.count == 1  # not tried again on every search


async def test_a_scope_larger_than_the_cache_is_still_searched(
    store: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    chat_id = await a_chat(store)
    vectors = clustered(300, 14)
    await remember(store, chat_id, vectors)
    small = VectorSearch(store.chunks, max_bytes=1000)
    with caplog.at_level(logging.WARNING):
        found = await small.search(chat_id, "memory", "v", vectors[7], 1)
    assert found[0][1] == pytest.approx(1.0)
    assert "vector_cache_bytes" in caplog.text
