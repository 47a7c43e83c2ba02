"""The prompt within the token budget: what a turn sends, and what /context shows.

Budget = context window − reply reserve (max_tokens) − safety margin. The persona and the
few-shot examples are the fixed part, never trimmed; the newest history fills the rest. When
the stored history no longer fits, the oldest messages are dropped down to a lower watermark
(history.trim_to of the budget) rather than one per turn, so the prompt prefix, and
llama.cpp's cache of it, stays the same for many turns. Token counts come from each backend's
own tokenizer and are stored per message with its id (counted again for another tokenizer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from botkit.backends.base import Backend, ContextOverflow, Message, PrefixCache, Vision
from botkit.backends.token_estimate import TokenEstimator
from botkit.config import HistoryConfig, VisionConfig
from botkit.core.rendering import (
    NO_RESULT,
    PICTURE_PLACEHOLDER,
    alternating,
    example_messages,
    pictured,
    pictures,
    render,
)
from botkit.core.settings import ChatSettings, max_reply_tokens
from botkit.retrieval.service import Retrieval
from botkit.store.repository import ChatRecord, Repository, StoredMessage

__all__ = [
    "ESTIMATED",
    "NO_RESULT",
    "PICTURE_PLACEHOLDER",
    "ContextReport",
    "Planner",
    "PromptPlan",
    "count_reply",
    "example_messages",
    "render",
]

log = logging.getLogger(__name__)

# Stored as a row's tokenizer id when its count is an estimate: no backend has this id, so
# the row is counted again with the real tokenizer when it is next read.
ESTIMATED = "estimate"
_ESTIMATE = TokenEstimator()


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """The messages to send and how the window is spent."""

    messages: list[Message]
    window: int
    reserve: int
    persona_tokens: int
    history_tokens: int
    new_tokens: int
    kept_messages: int
    start_id: int
    examples_tokens: int = 0  # the few-shot pairs after the persona
    examples: int = 0
    # Kept for retrieval (botkit.retrieval): the history's share gives these up while the chat
    # recalls or has documents, and what was found goes before the new message.
    memory_budget: int = 0
    knowledge_budget: int = 0
    memory_tokens: int = 0  # recalled messages given (0 until the turn's search)
    knowledge_tokens: int = 0  # document passages given
    tools_tokens: int = 0  # the declarations of the tools offered (botkit.tools)
    # Of history_tokens: the pictures shown and the placeholders of older ones; and how many
    # pictures are (shown, replaced by a placeholder).
    image_tokens: int = 0
    pictures: tuple[int, int] = (0, 0)

    @property
    def used(self) -> int:
        """Tokens the prompt takes, reply reserve not included."""
        return (
            self.persona_tokens + self.examples_tokens + self.history_tokens + self.new_tokens
            + self.memory_tokens + self.knowledge_tokens + self.tools_tokens
        )  # fmt: skip

    def with_retrieved(self, content: str, memory: int, knowledge: int) -> PromptPlan:
        """This plan with the new message's text replaced by content (what retrieval found,
        then the message) costing memory + knowledge tokens more."""
        last = self.messages[-1]
        return replace(
            self,
            messages=[*self.messages[:-1], {"role": last["role"], "content": content}],
            memory_tokens=memory,
            knowledge_tokens=knowledge,
        )


@dataclass(frozen=True, slots=True)
class ContextReport:
    """What /context shows."""

    plan: PromptPlan
    dropped_messages: int  # stored, but before the window: the model no longer sees them
    # Leading prompt tokens (persona, examples, history) in the chat's KV cache now, so the
    # next reply does not evaluate them again; None: the backend keeps no such cache.
    cached: int | None = None

    @property
    def free(self) -> int:
        """Tokens neither used nor reserved."""
        p = self.plan
        return max(0, p.window - p.used - p.reserve)


_RENDERED = 65536  # rendered messages kept (cleared when full)


async def count_reply(backend: Backend, reply: Message) -> tuple[int, str]:
    """The reply's tokens and who counted them. If the backend cannot count now (its
    tokenizer endpoint failed), an estimate is stored under another tokenizer id, so the
    next turn that reads the row counts it again (Planner._counted)."""
    if not reply["content"]:
        return 0, backend.tokenizer_id
    try:
        return await backend.message_tokens(reply), backend.tokenizer_id
    except Exception as exc:
        log.warning("could not count a finished reply's tokens (%s); estimated for now", exc)
        return _ESTIMATE.message(reply), ESTIMATED


class Planner:
    """Plans prompts from the store's kept window, with each backend's own token counts."""

    def __init__(
        self,
        history: HistoryConfig,
        backends: Mapping[str, Backend],
        store: Callable[[], Repository],
        vision: VisionConfig | None = None,
    ) -> None:
        """store: the repository, once the bot has started (asked for at each use); vision:
        how long pictures stay in the prompt ([vision] keep_turns)."""
        self._vision = vision or VisionConfig()
        self._history = history
        self._backends = backends
        self._store = store
        self._rendered: dict[int, tuple[StoredMessage, Message]] = {}

    def budget(self, backend: Backend, settings: ChatSettings) -> int:
        """Tokens available to persona + history + new message."""
        margin = self._history.safety_margin_tokens
        return backend.context_window - settings.max_tokens - margin

    async def fixed_cost_problem(self, backend: Backend, settings: ChatSettings) -> str | None:
        """What is wrong with these settings together, or None: the persona and the examples
        (never trimmed) may take at most half of what the window leaves after the reply
        reserve, so the conversation always has room. Each setter (/persona, /examples,
        /maxtokens) checks the settings it would leave, so no combination of them can make
        every message too long."""
        window = backend.context_window
        if settings.max_tokens > max_reply_tokens(window):
            return (
                f"/maxtokens {settings.max_tokens} would leave too little of the {window}-token "
                f"context window for the conversation. Allowed: 1 to {max_reply_tokens(window)} on "
                f"backend {backend.name!r}"
            )
        persona = await backend.message_tokens({"role": "system", "content": settings.persona})
        examples = 0
        for message in example_messages(settings.examples):
            examples += await backend.message_tokens(message)
        budget = self.budget(backend, settings)
        if persona + examples <= budget // 2:
            return None
        margin = self._history.safety_margin_tokens
        most = min(max_reply_tokens(window), window - margin - 2 * (persona + examples))
        lower = [f"/maxtokens to {most} or less"] if most >= 1 else []
        lower.append("shorten the persona")
        if examples:
            lower.append("remove examples (/examples remove N)")
        shots = f" and the examples ({examples} tokens)" if settings.examples else ""
        return (
            f"the persona ({persona} tokens){shots} may take at most half of what the "
            f"{window}-token window leaves after the reply reserve of {settings.max_tokens} "
            f"tokens ({budget // 2} tokens), so the conversation has room; they would take "
            f"{persona + examples}. Lower one: {', or '.join(lower)}"
        )

    async def history(
        self, chat: ChatRecord, backend: Backend, before: int | None = None
    ) -> list[StoredMessage]:
        """The kept window (before a message id), counted with backend's tokenizer."""
        rows = await self._store().window(chat.id, chat.window_start_id)
        if before is not None:
            rows = [r for r in rows if r.id < before]
        # A reply cut before its first token is left out; a tool round's rows never are (a
        # call without its result, or a result without its call, is refused by the APIs).
        return await self._counted([r for r in rows if r.content or r.tool or r.images], backend)

    async def fixed_cost(
        self, backend: Backend, settings: ChatSettings, new: Message | None
    ) -> tuple[int, int, int]:
        """(persona + examples + generation prompt + new message, persona alone, examples
        alone), in tokens: what is never trimmed. Refuses a message that could never fit,
        whatever the history."""
        system: Message = {"role": "system", "content": settings.persona}
        # Per-message counts are cached by the backend; the template is additive, the backend
        # checks the exact prompt.
        fixed = await backend.count_tokens([system])
        examples = 0
        for message in example_messages(settings.examples):
            examples += await backend.message_tokens(message)
        fixed += examples
        if new is not None:
            fixed += await backend.message_tokens(new)
            if new.get("images") and isinstance(backend, Vision):
                fixed += sum([await backend.image_tokens(i) for i in new.get("images", [])])
        persona = await backend.message_tokens(system)
        if fixed > self.budget(backend, settings):
            shots = f", the examples ({examples} tokens)" if examples else ""
            raise ContextOverflow(
                f"the persona ({persona} tokens){shots} and your message "
                f"({fixed - persona - examples} tokens with the template) leave no room in the "
                f"{backend.context_window}-token window with {settings.max_tokens} tokens "
                "reserved for the reply: shorten the message, the persona"
                f"{' or the examples' if examples else ''}, or lower /maxtokens"
            )
        return fixed, persona, examples

    async def plan(
        self,
        chat: ChatRecord,
        settings: ChatSettings,
        rows: list[StoredMessage],
        new: Message | None,
        new_id: int | None = None,
        reserve: tuple[int, int] = (0, 0),
        tools_tokens: int = 0,
    ) -> PromptPlan:
        """Fit persona + newest history + new message into the budget (no side effects: the
        caller stores a moved window start). new_id: the stored id of the new message, where
        the window starts if no history fits beside it. reserve: (memory, knowledge) tokens
        the history leaves for retrieval. tools_tokens: what the tools' declarations cost."""
        backend = self._backends[settings.backend]
        fixed, persona, examples = await self.fixed_cost(backend, settings, new)
        fixed += tools_tokens
        # Retrieval takes at most half of what the history could have had (a small window
        # with large [memory]/[knowledge] budgets still keeps a conversation), memory first.
        budget = self.budget(backend, settings)
        share = max(0, budget - fixed) // 2
        memory = min(reserve[0], share)
        knowledge = min(reserve[1], share - memory)
        budget -= memory + knowledge
        shown, extra = await pictures(
            rows, backend, self._vision.keep_turns, self._store, self._render
        )
        history = sum(r.token_count + extra.get(r.id, 0) for r in rows)
        start = chat.window_start_id
        if fixed + history > budget:
            target = int(budget * self._history.trim_to)
            rows = list(rows)
            # The persona and the examples are never trimmed: the oldest history goes, and a
            # reply left first goes too (it would merge into the last example's answer). A
            # tool round goes whole: its calls (an assistant row) first, then each result,
            # so a call is never kept without its result or a result without its call.
            while rows and (fixed + history > target or rows[0].role in ("assistant", "tool")):
                gone = rows.pop(0)
                history -= gone.token_count + extra.get(gone.id, 0)
            first = rows[0].id if rows else new_id or await self._next_id(chat)
            start = max(start, first)
        system: Message = {"role": "system", "content": settings.persona}
        messages = alternating(
            [
                system,
                *example_messages(settings.examples),
                *(pictured(self._render(r), r, shown) for r in rows),
                *([new] if new else []),
            ]
        )
        return PromptPlan(
            messages=messages,
            window=backend.context_window,
            reserve=settings.max_tokens,
            persona_tokens=persona,
            history_tokens=history,
            new_tokens=fixed - persona - examples - tools_tokens,
            kept_messages=len(rows),
            start_id=start,
            examples_tokens=examples,
            examples=len(settings.examples),
            memory_budget=memory,
            knowledge_budget=knowledge,
            tools_tokens=tools_tokens,
            image_tokens=sum(extra.get(r.id, 0) for r in rows),
            pictures=(
                sum(len(shown.get(r.id, ())) for r in rows),
                sum(len(r.images) for r in rows if r.id not in shown),
            ),
        )

    async def plan_turn(
        self,
        chat: ChatRecord,
        settings: ChatSettings,
        rows: list[StoredMessage],
        new: Message | None,
        new_id: int,
        retrieval: Retrieval | None,
        tools_tokens: int = 0,
    ) -> PromptPlan:
        """A turn's prompt plan (as plan), with what retrieval found for the new message
        before it, in the tokens the history left for it."""
        if retrieval is None or new is None:
            return await self.plan(chat, settings, rows, new, new_id, tools_tokens=tools_tokens)
        backend = self._backends[settings.backend]
        reserve = await retrieval.reserve(chat.id, settings)
        plan = await self.plan(
            chat, settings, rows, new, new_id, reserve=reserve, tools_tokens=tools_tokens
        )
        budgets = (plan.memory_budget, plan.knowledge_budget)
        found = await retrieval.recall(
            chat, settings, new["content"], plan.start_id, backend, new, budgets
        )
        if found is None or found.content == new["content"]:
            return plan
        # The new message is the plan's last (merged into it if history ended with a user's).
        last = plan.messages[-1]["content"]
        head = last[: len(last) - len(new["content"])] if last.endswith(new["content"]) else ""
        # The block's exact count is found.tokens; the per-source split is the entries'.
        memory = min(found.memory_tokens, found.tokens)
        return plan.with_retrieved(head + found.content, memory, found.tokens - memory)

    def _render(self, row: StoredMessage) -> Message:
        """render(row), kept while the window cache hands out the same row object: a turn
        renders every kept message, hundreds, and most were rendered for the turn before.
        (Messages are never mutated once built; _alternating merges into new ones.)"""
        hit = self._rendered.get(row.id)
        if hit is not None and hit[0] is row:
            return hit[1]
        if len(self._rendered) >= _RENDERED:
            self._rendered.clear()
        message = render(row)
        self._rendered[row.id] = (row, message)
        return message

    async def _next_id(self, chat: ChatRecord) -> int:
        rows = await self._store().window(chat.id, chat.window_start_id)
        return (rows[-1].id + 1) if rows else chat.window_start_id

    async def _counted(self, rows: list[StoredMessage], backend: Backend) -> list[StoredMessage]:
        """Rows with token counts from this backend's tokenizer (recounting others, once)."""
        stale = [r for r in rows if r.tokenizer_id != backend.tokenizer_id]
        if not stale:
            return rows
        counts = {r.id: await backend.message_tokens(render(r)) for r in stale}
        await self._store().recount([(i, n, backend.tokenizer_id) for i, n in counts.items()])
        return [
            replace(r, token_count=counts[r.id], tokenizer_id=backend.tokenizer_id)
            if r.id in counts
            else r
            for r in rows
        ]

    async def report(
        self,
        chat: ChatRecord,
        settings: ChatSettings,
        reserve: tuple[int, int] = (0, 0),
        tools_tokens: int = 0,
    ) -> ContextReport:
        """The window as it would be spent by the next turn (without a new message); reserve:
        what retrieval keeps, as in plan; tools_tokens: the declarations offered."""
        backend = self._backends[settings.backend]
        rows = await self.history(chat, backend)
        plan = await self.plan(chat, settings, rows, None, reserve=reserve,
                               tools_tokens=tools_tokens)  # fmt: skip
        cached = None
        if isinstance(backend, PrefixCache):
            cached = await backend.cached_prefix(plan.messages, str(chat.key))
        # Counted only here: a COUNT over a long history is not paid on every turn.
        dropped = await self._store().count_before(chat.id, plan.start_id)
        return ContextReport(plan, dropped, cached)
