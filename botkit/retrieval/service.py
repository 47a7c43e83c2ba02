"""Retrieval for a turn: what is recalled and which passages are given, within their budgets.

`Retrieval` is what the conversation and the commands use: `reserve` says how many tokens the
history's share gives up while a chat recalls or has documents (the same every turn, so the
kept window and its KV cache do not move with what is found), `recall` searches both sources
for a new message and fits what is relevant into those tokens, counted by the chat's backend,
and `sources` keeps what the last reply was given, for /sources. Whatever fails in retrieval
(the embedder down or slow, a search error) costs the turn its retrieval, never its reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache, TTLCache

from botkit.backends.base import Backend, Message
from botkit.config.retrieval import KnowledgeConfig, MemoryConfig, RetrievalConfig
from botkit.core.settings import ChatSettings
from botkit.retrieval.embedder import Embedder, EmbedderError
from botkit.retrieval.indexer import Indexer
from botkit.retrieval.quoting import (
    KNOWLEDGE_HEADER,
    MEMORY_HEADER,
    compose,
    knowledge_entry,
    memory_entry,
)
from botkit.retrieval.search import Candidate, Searcher
from botkit.retrieval.vectors import VectorSearch
from botkit.store.repository import ChatRecord, Repository

__all__ = ["Given", "Recalled", "Retrieval", "SourcesReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Given:
    """A candidate as /sources shows it: given to the model (number: its [n] for a passage)
    or left out, and why."""

    candidate: Candidate
    tokens: int | None  # its cost in the prompt, where it was counted
    number: int | None = None
    why: str | None = None  # None: given

    @property
    def used(self) -> bool:
        """Whether the model was given it."""
        return self.why is None


@dataclass(frozen=True, slots=True)
class SourcesReport:
    """What one turn's retrieval found and gave (/sources)."""

    query: str
    at: datetime
    memory: list[Given] = field(default_factory=list)
    knowledge: list[Given] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. keywords only, and why
    memory_budget: int = 0
    knowledge_budget: int = 0
    tokens: int = 0  # what the block cost in the prompt, counted exactly


@dataclass(frozen=True, slots=True)
class Recalled:
    """The new message with what was retrieved before it, and its cost."""

    content: str
    tokens: int  # content's tokens beyond the message alone, counted by the backend
    memory_tokens: int
    knowledge_tokens: int
    report: SourcesReport


class Retrieval:
    """Memory and knowledge for one bot: search, fit, index, report."""

    def __init__(
        self,
        memory: MemoryConfig,
        knowledge: KnowledgeConfig,
        config: RetrievalConfig,
        embedder: Embedder | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """clock: what the has-documents cache times its entries by."""
        self.memory = memory
        self.knowledge = knowledge
        self.config = config
        self.embedder = embedder
        self.embedder_failure: str | None = None  # why the embedder did not start
        self._repo: Repository | None = None
        self._searcher: Searcher | None = None
        self.vectors: VectorSearch | None = None
        self.indexer: Indexer | None = None
        self._task: asyncio.Task[None] | None = None
        # chat: has documents. Timed: `botkit docs add` (another process) may give a chat its
        # first documents, which this process then sees within the indexer's own period.
        self._documents: TTLCache[int, bool] = TTLCache(maxsize=4096, ttl=30.0, timer=clock)
        self._last: LRUCache[int, SourcesReport] = LRUCache(maxsize=4096)

    async def start(self, repo: Repository, *, background: bool = True) -> None:
        """Start the embedder (a failure leaves retrieval on keywords, and says why) and the
        indexer (background=False: only built, for a caller that drains it itself)."""
        self._repo = repo
        if self.embedder is not None:
            try:
                await self.embedder.start()
            except EmbedderError as exc:
                self.embedder_failure = str(exc)
                log.warning("retrieval runs on keywords only: %s", exc)
        embedder = self.embedder if self.embedder_failure is None else None
        self.vectors = VectorSearch(
            repo.chunks, self.config.vector_cache_bytes, self.config.index_threshold
        )
        self._searcher = Searcher(repo.chunks, self.vectors, self.config)
        self.indexer = Indexer(repo.chunks, embedder, self.config.index_batch)
        if background:
            self._task = asyncio.create_task(self.indexer.run(), name="botkit-indexer")

    async def close(self) -> None:
        """Stop indexing and release the embedder."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this close is being cancelled, not just the indexer
            self._task = None
        if self.vectors is not None:
            await self.vectors.close()
        if self.embedder is not None:
            await self.embedder.close()

    @property
    def live_embedder(self) -> Embedder | None:
        """The embedder, if it started."""
        return self.embedder if self.embedder_failure is None else None

    def stored(self) -> None:
        """A turn stored messages: index them (off this path)."""
        if self.indexer is not None:
            self.indexer.wake()

    def documents_changed(self, chat_id: int | None) -> None:
        """A chat's documents (None: the bot's for every chat) were added or removed."""
        if chat_id is None:
            self._documents.clear()
        else:
            self._documents.pop(chat_id, None)
        self.stored()

    def forget(self, chat_id: int) -> None:
        """The chat's history was cleared (/reset): its recall and its report go."""
        self._last.pop(chat_id, None)
        if self.vectors is not None:
            self.vectors.forget(chat_id)

    async def has_documents(self, chat_id: int) -> bool:
        """Whether the chat has documents (its own or the bot's for every chat)."""
        known = self._documents.get(chat_id)
        if known is None and self._repo is not None:
            known = bool(await self._repo.documents.of_chat(chat_id))
            self._documents[chat_id] = known
        return bool(known)

    async def reserve(self, chat_id: int, settings: ChatSettings) -> tuple[int, int]:
        """(memory, knowledge) tokens kept for retrieval in this chat's prompts."""
        memory = self.memory.budget if settings.memory else 0
        knowledge = self.knowledge.budget if await self.has_documents(chat_id) else 0
        return memory, knowledge

    async def _has_older(self, chat_id: int, before: int) -> bool:
        """Whether the chat has indexed messages before the kept window's first id."""
        return (
            before > 0
            and self._repo is not None
            and (await self._repo.chunks.has_memory_before(chat_id, before))
        )

    def sources(self, chat_id: int) -> SourcesReport | None:
        """What the chat's last reply was given (since this process started)."""
        return self._last.get(chat_id)

    async def query_vector(self, text: str) -> npt.NDArray[np.float32]:
        """text's vector, within [retrieval] query_timeout (raises EmbedderError)."""
        embedder = self.live_embedder
        if embedder is None:
            raise EmbedderError(self.embedder_failure or "no embedder is configured")
        try:
            async with asyncio.timeout(self.config.query_timeout):  # not wait_for: see indexer
                vectors = await embedder.embed([text])
        except TimeoutError:
            raise EmbedderError(
                f"the embedder took longer than {self.config.query_timeout:g} s"
            ) from None
        return np.asarray(vectors[0], dtype=np.float32)

    async def recall(
        self,
        chat: ChatRecord,
        settings: ChatSettings,
        query: str,
        before: int,
        backend: Backend,
        new: Message,
        budgets: tuple[int, int] | None = None,
    ) -> Recalled | None:
        """new with what is relevant to query before it, within the chat's budgets (before:
        the kept window's first message id: memory recalls only what lies before it;
        budgets: (memory, knowledge) as the prompt plan kept them, else the chat's reserve).
        None: the chat neither recalls nor has documents."""
        if budgets is None:
            budgets = await self.reserve(chat.id, settings)
        memory_budget, knowledge_budget = budgets
        if not memory_budget and not knowledge_budget:
            return None
        report = SourcesReport(
            query, datetime.now(UTC), memory_budget=memory_budget,
            knowledge_budget=knowledge_budget,
        )  # fmt: skip
        try:
            # Nothing to search, no vector to make: a chat whose every message is still in
            # the window (most chats) and that has no documents pays nothing per turn.
            older = bool(memory_budget) and await self._has_older(chat.id, before)
            if not older and not knowledge_budget:
                report.notes.append(
                    "nothing to recall: every indexed message of this chat is in the window"
                )
                recalled = Recalled(new["content"], 0, 0, 0, report)
            else:
                recalled = await self._recall(chat, query, before, backend, new, report, older)
        except Exception as exc:
            log.exception("retrieval failed in %s", chat.key)
            report.notes.append(f"retrieval failed ({type(exc).__name__}); nothing was given")
            recalled = Recalled(new["content"], 0, 0, 0, report)
        self._last[chat.id] = recalled.report
        return recalled

    async def _recall(
        self,
        chat: ChatRecord,
        query: str,
        before: int,
        backend: Backend,
        new: Message,
        report: SourcesReport,
        older: bool,
    ) -> Recalled:
        assert self._searcher is not None
        vector = None
        embedder = self.live_embedder
        if embedder is None:
            why = self.embedder_failure or "no embedder is configured"
            report.notes.append(f"keywords only: {why}")
        else:
            try:
                vector = await self.query_vector(query)
            except EmbedderError as exc:
                report.notes.append(f"keywords only: the embedder failed ({exc})")
        name = embedder.name if embedder is not None else None
        count = _Counter(backend)
        memory: list[Given] = []
        if older:
            found = await self._searcher.search(chat.id, "memory", query, vector, name, before)
            memory = await _fit(found, report.memory_budget, MEMORY_HEADER, count, _memory_entry)
        knowledge: list[Given] = []
        if report.knowledge_budget:
            found = await self._searcher.search(chat.id, "knowledge", query, vector, name)
            knowledge = await _fit(
                found, report.knowledge_budget, KNOWLEDGE_HEADER, count, _knowledge_entry
            )
        # Exactly: the message with the block against the message alone. Per-entry counts
        # add up to within a token or two of it; what is over comes off the lowest ranked.
        limit = report.memory_budget + report.knowledge_budget
        alone = await count.message(new["content"])
        while True:
            content = _compose(memory, knowledge, new["content"])
            tokens = await count.message(content) - alone
            if tokens <= limit or not (_given(memory) or _given(knowledge)):
                break
            _drop_last(knowledge if _given(knowledge) else memory, tokens, limit)
        given = _given(memory) + _given(knowledge)
        report_tokens = tokens if given else 0
        final = SourcesReport(
            report.query, report.at, memory, knowledge, report.notes, report.memory_budget,
            report.knowledge_budget, report_tokens,
        )  # fmt: skip
        return Recalled(
            content if given else new["content"],
            report_tokens,
            sum(g.tokens or 0 for g in memory if g.used),
            sum(g.tokens or 0 for g in knowledge if g.used),
            final,
        )


class _Counter:
    """Token costs by the chat's backend: an entry's cost is its message's count less the
    template's own tokens around a message."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._overhead: int | None = None

    async def message(self, content: str) -> int:
        return await self._backend.message_tokens({"role": "user", "content": content})

    async def text(self, content: str) -> int:
        if self._overhead is None:
            self._overhead = await self.message("x") - 1
        return max(0, await self.message(content) - self._overhead)


def _memory_entry(_number: int, candidate: Candidate) -> str:
    return memory_entry(candidate.chunk)


def _knowledge_entry(number: int, candidate: Candidate) -> str:
    return knowledge_entry(number, candidate.chunk)


async def _fit(
    found: Sequence[Candidate],
    budget: int,
    header: str,
    count: _Counter,
    entry: Callable[[int, Candidate], str],
) -> list[Given]:
    """found, each given (best first) while it is relevant and fits in budget, or left out
    with the reason; the given are numbered 1, 2 … in order."""
    given: list[Given] = []
    used = await count.text(header) + 2  # the blank lines around the block
    for candidate in found:
        if not candidate.relevant:
            cosine = candidate.hit.similarity
            seen = f"cosine {cosine:.2f}, " if cosine is not None else ""
            given.append(Given(candidate, None, why=f"not relevant ({seen}no keyword match)"))
            continue
        number = _given(given) + 1
        cost = await count.text(entry(number, candidate))
        if used + cost > budget:
            left = max(0, budget - used)
            given.append(Given(candidate, cost, why=f"over budget ({cost} tokens, {left} left)"))
            continue
        used += cost
        given.append(Given(candidate, cost, number=number))
    return given


def _given(entries: Sequence[Given]) -> int:
    return sum(1 for g in entries if g.used)


def _drop_last(entries: list[Given], tokens: int, limit: int) -> None:
    """Leave out the lowest ranked entry given (the exact count was over the budget)."""
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].used:
            g = entries[i]
            why = f"over budget (the block counted {tokens} tokens, {limit} allowed)"
            entries[i] = Given(g.candidate, g.tokens, why=why)
            return


def _compose(memory: Sequence[Given], knowledge: Sequence[Given], message: str) -> str:
    """The message with the given entries before it: memory oldest first, passages by their
    number."""
    recalled = sorted((g for g in memory if g.used), key=lambda g: g.candidate.chunk.id)
    passages = [g for g in knowledge if g.used]
    return compose(
        [memory_entry(g.candidate.chunk) for g in recalled],
        [knowledge_entry(g.number or i, g.candidate.chunk) for i, g in enumerate(passages, 1)],
        message,
    )
