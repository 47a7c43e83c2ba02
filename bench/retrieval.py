"""12. Retrieval at scale: search latency, recall, load time and memory at 1k, 100k and 1M chunks.

One chat's memory of N chunks, 384 dimensions (all-MiniLM-L6-v2's): unit vectors around 2,000
topics, two of a topic about as close as related sentences are (cosine ~0.5), with text of
the README's own words, a topic's words more often. Up to 100k the chunks go through the real
table (a migrated SQLite file, bulk-inserted; the FTS5 index kept by the migration's
triggers), and the search through VectorSearch and Chunks as the bot does it. At 1M the rows
are handed over from memory (bulk-inserting 1M chunks with their FTS5 entries and 1.5 GB of
vectors does not fit a few minutes on 2 cores), so there is no keyword figure at 1M.

Each size is searched twice in the same run: as the bot does (exact below [retrieval]
index_threshold, the faiss index above it) and exactly (the baseline, and the truth for
recall@10). Queries are new vectors near the same topics and 3-5 words of a stored chunk.
Keywords are also searched in a second chat of 1k chunks beside the 100k: what a small chat
pays in a large database.

BOTKIT_BENCH_RETRIEVAL_SIZES (e.g. "1000,100000") runs only those sizes; the default is all.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from bench.common import Result, median, p99
from bench.memory import _rss
from botkit.config import RetrievalConfig
from botkit.core.events import ChatKey
from botkit.retrieval.vectors import VectorSearch
from botkit.store.chunks import Chunks, Source
from botkit.store.db import create_engine, upgrade
from botkit.store.repository import Repository

SIZES = [1_000, 100_000, 1_000_000]
SMALL_CHAT = 1_000  # the second chat's chunks, beside IN_DATABASE of the first
IN_DATABASE = 100_000  # sizes up to this go through the real table
DIMENSIONS = 384
TOPICS = 2_000
# Per dimension, against a topic's ~1: a chunk's cosine to its topic ~0.7, to another chunk
# of its topic ~0.5 (all-MiniLM-L6-v2 scores related sentences 0.5-0.8), to the rest ~0.
NOISE = 1.0
QUERIES = 200
EXACT_QUERIES = 30  # exact search at 1M is ~0.15 s a query
BATCH = 20_000
NAME = "minilm"
Matrix = npt.NDArray[np.float32]


def _vocabulary() -> list[str]:
    text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text("utf-8")
    return sorted(set(re.findall(r"[a-z]{3,}", text.lower())))


class _Corpus:
    """Clustered unit vectors and text, generated a batch at a time."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.topics = np.random.default_rng(1).standard_normal((TOPICS, DIMENSIONS))
        self.words = np.array(_vocabulary())
        # Each topic's own 12 words; the rest of a text is Zipf-distributed common words.
        self.topic_words = np.random.default_rng(2).integers(0, len(self.words), (TOPICS, 12))

    def vectors(self, topics: npt.NDArray[np.int64]) -> Matrix:
        noise = self.rng.standard_normal((len(topics), DIMENSIONS))
        rows = self.topics[topics] + NOISE * noise
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32)

    def texts(self, topics: npt.NDArray[np.int64]) -> list[str]:
        common = np.minimum(self.rng.zipf(1.3, (len(topics), 14)), len(self.words)) - 1
        own = self.topic_words[topics[:, None], self.rng.integers(0, 12, (len(topics), 4))]
        return [
            " ".join(self.words[np.concatenate([c, o])]) for c, o in zip(common, own, strict=True)
        ]

    def batch(self, count: int) -> tuple[Matrix, npt.NDArray[np.int64]]:
        topics = self.rng.integers(0, TOPICS, count)
        return self.vectors(topics), topics


class _Rows:
    """A scope's rows from memory, as Chunks.signature and Chunks.vectors give them (1M)."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    async def signature(self, chat_id: int, source: Source, embedder: str) -> tuple[int, int]:
        return len(self.blobs), len(self.blobs)

    async def vectors(
        self, chat_id: int, source: Source, embedder: str, after: int = 0
    ) -> list[tuple[int, int | None, bytes]]:
        return [(i + 1, i + 1, b) for i, b in enumerate(self.blobs[after:], start=after)]


def _insert(database: str, chat_id: int, size: int, corpus: _Corpus) -> None:
    """size messages of the chat with their chunks, embedded (bulk, as history.py does)."""
    now = datetime.now(UTC).isoformat(sep=" ")
    with sqlite3.connect(database) as db:
        for start in range(0, size, BATCH):
            count = min(BATCH, size - start)
            vectors, topics = corpus.batch(count)
            texts = corpus.texts(topics)
            first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0]
            db.executemany(
                "INSERT INTO messages (id, chat_id, role, content, token_count, tokenizer_id, "
                "status, created_at) VALUES (?, ?, 'user', ?, 20, 'bench', 'complete', ?)",
                [(first + i, chat_id, t, now) for i, t in enumerate(texts)],
            )
            db.executemany(
                "INSERT INTO chunks (chat_id, message_id, seq, text, tokens, embedder, vector, "
                "created_at) VALUES (?, ?, 0, ?, 20, ?, ?, ?)",
                [
                    (chat_id, first + i, t, NAME, v.astype("<f4").tobytes(), now)
                    for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
                ],
            )


Found = list[tuple[int, float]]


async def _timed(
    search: VectorSearch, queries: Sequence[Matrix]
) -> tuple[list[float], list[Found]]:
    times: list[float] = []
    found: list[Found] = []
    for query in queries:
        start = time.perf_counter()
        found.append(await search.search(1, "memory", NAME, query, 10))
        times.append(time.perf_counter() - start)
    return times, found


async def _size(size: int, rows: Chunks | _Rows, corpus: _Corpus, out: list[Result]) -> None:
    """Load, search and compare one size (rows: Chunks or _Rows)."""
    queries = list(corpus.batch(QUERIES)[0])
    exact = VectorSearch(rows, max_bytes=1 << 40, threshold=1 << 62)
    start = time.perf_counter()
    await exact.search(1, "memory", NAME, queries[0], 10)
    exact_load = time.perf_counter() - start
    exact_times, truth = await _timed(
        exact, queries[:EXACT_QUERIES] if size > IN_DATABASE else queries
    )
    del exact
    gc.collect()
    before = _rss()
    search = VectorSearch(rows, max_bytes=1 << 40)
    start = time.perf_counter()
    await search.search(1, "memory", NAME, queries[0], 10)
    await search.indexed()
    load = time.perf_counter() - start
    grown = _rss() - before
    times, found = await _timed(search, queries)
    counting: list[float] = []  # the scope's (count, newest) query, part of every search
    for _ in range(20):
        start = time.perf_counter()
        await rows.signature(1, "memory", NAME)
        counting.append(time.perf_counter() - start)
    recall = float(np.mean([
        len({c for c, _ in f} & {c for c, _ in t}) / max(1, len(t))
        for f, t in zip(found, truth, strict=False)  # truth: the first queries
    ]))  # fmt: skip
    label = _label(size)
    kind = "exact" if size < RetrievalConfig().index_threshold else "faiss IVF"
    out += [
        Result(f"vector search p50, {label} ({kind} vs exact)", median(times) * 1e3,
               median(exact_times) * 1e3, "ms", median(times) / median(exact_times),
               "p50 ≤ 50 ms", median(times) <= 0.05,
               f"of which the scope's count query {median(counting) * 1e3:.1f} ms"),
        Result(f"vector search p99, {label}", p99(times) * 1e3, p99(exact_times) * 1e3, "ms",
               p99(times) / p99(exact_times), "report", True),
        Result(f"recall@10 vs exact, {label}", float(recall), 1.0, "", float(recall),
               "≥ 0.95", recall >= 0.95, f"{len(truth)} queries"),
        Result(f"load + index build, {label} (vs exact's load)", load, exact_load, "s",
               load / exact_load, "report", True),
    ]  # fmt: skip
    if size == SIZES[-1]:
        raw = size * DIMENSIONS * 4
        out.append(
            Result(f"resident memory growth, {label} (vs float32 vectors)", grown / 1e6,
                   raw / 1e6, "MB", grown / raw, "report", True,
                   "the matrix, ids and the 8-bit index")
        )  # fmt: skip
        if isinstance(rows, _Rows):
            out.append(_float16(rows.blobs, queries, median(exact_times), label))


def _float16(blobs: list[bytes], queries: Sequence[Matrix], exact: float, label: str) -> Result:
    """Exact search on the matrix stored as float16 (half the memory), against float32."""
    half = np.concatenate([
        np.frombuffer(b"".join(blobs[i : i + BATCH]), "<f4").astype(np.float16)
        for i in range(0, len(blobs), BATCH)
    ]).reshape(len(blobs), -1)  # fmt: skip
    times: list[float] = []
    for query in queries[:5]:
        start = time.perf_counter()
        similarity = half @ query.astype(np.float16)
        np.argpartition(-similarity, 9)[:10]
        times.append(time.perf_counter() - start)
    return Result(f"exact p50 on a float16 matrix, {label}", median(times) * 1e3, exact * 1e3,
                  "ms", median(times) / exact, "report", True,
                  f"{half.nbytes / 1e6:.0f} MB vs {2 * half.nbytes / 1e6:.0f}: numpy has no "
                  "float16 BLAS")  # fmt: skip


def _label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1_000}k"


async def _keywords(repo: Repository, corpus: _Corpus, chat_id: int, label: str,
                    out: list[Result], first: list[float]) -> None:  # fmt: skip
    """Keyword (FTS5) latency in a chat: 3-5 words of its stored chunks; baseline the first
    size's p50."""
    stored = await repo.read(
        text(
            "SELECT text FROM chunks WHERE chat_id = :chat ORDER BY random() LIMIT 100"
        ).bindparams(chat=chat_id)
    )
    times = []
    for (stored_text,) in stored:
        words = stored_text.split()
        pick = corpus.rng.choice(len(words), int(corpus.rng.integers(3, 6)), replace=False)
        start = time.perf_counter()
        await repo.chunks.keyword(chat_id, "memory", " ".join(words[i] for i in pick), 20)
        times.append(time.perf_counter() - start)
    if not first:
        first.append(median(times))
    out.append(
        Result(f"keyword search p50, {label} (vs {_label(SIZES[0])})",
               median(times) * 1e3, first[0] * 1e3, "ms", median(times) / first[0],
               "p50 ≤ 50 ms", median(times) <= 0.05, f"p99 {p99(times) * 1e3:.1f} ms, FTS5")
    )  # fmt: skip


def _sizes() -> list[int]:
    """SIZES, or those BOTKIT_BENCH_RETRIEVAL_SIZES names."""
    named = os.environ.get("BOTKIT_BENCH_RETRIEVAL_SIZES", "")
    return [int(n) for n in named.split(",")] if named else SIZES


async def run(sizes: Sequence[int] | None = None) -> list[Result]:
    """The figures per size, smallest first (all sizes unless the environment names some)."""
    out: list[Result] = []
    corpus = _Corpus()
    first: list[float] = []
    for size in _sizes() if sizes is None else sizes:
        if size <= IN_DATABASE:
            with tempfile.TemporaryDirectory() as folder:
                engine = create_engine(f"sqlite+aiosqlite:///{folder}/retrieval.db")
                await upgrade(engine)
                repo = Repository(engine, cached_chats=4, owner="bench")
                chat = await repo.chat(ChatKey("bench", "retrieval"))
                assert chat.id == 1
                await asyncio.to_thread(_insert, f"{folder}/retrieval.db", chat.id, size, corpus)
                await _size(size, repo.chunks, corpus, out)
                await _keywords(repo, corpus, chat.id, _label(size), out, first)
                if size == IN_DATABASE:
                    other = await repo.chat(ChatKey("bench", "small"))
                    database = f"{folder}/retrieval.db"
                    await asyncio.to_thread(_insert, database, other.id, SMALL_CHAT, corpus)
                    label = f"a {_label(SMALL_CHAT)} chat beside {_label(size)}"
                    await _keywords(repo, corpus, other.id, label, out, first)
                await repo.close()
                await engine.dispose()
        else:
            blobs = []
            for start in range(0, size, BATCH):
                vectors, _ = corpus.batch(min(BATCH, size - start))
                blobs += [v.astype("<f4").tobytes() for v in vectors]
            await _size(size, _Rows(blobs), corpus, out)
            del blobs
        gc.collect()
    return out
