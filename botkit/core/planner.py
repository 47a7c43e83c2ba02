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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from botkit.backends.base import Backend, ContextOverflow, Message, PrefixCache, Vision
from botkit.backends.token_estimate import TokenEstimator
from botkit.config import HistoryConfig, VisionConfig
from botkit.core.settings import ChatSettings, Example, max_reply_tokens
from botkit.images.spec import Image
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


def example_messages(examples: Sequence[Example]) -> list[Message]:
    """Few-shot examples as the user/assistant pairs that follow the persona."""
    messages: list[Message] = []
    for said, answered in examples:
        messages.append({"role": "user", "content": said})
        messages.append({"role": "assistant", "content": answered})
    return messages


_RENDERED = 65536  # rendered messages kept (cleared when full)


# Where a picture older than [vision] keep_turns was: the model no longer gets its pixels.
PICTURE_PLACEHOLDER = "[a picture was sent here; it is no longer shown]"

# A tool row whose tool never returned (the process stopped while it ran).
NO_RESULT = "(no result: the tool was interrupted)"


def render(message: StoredMessage) -> Message:
    """A stored message as the model is given it (a tool round's rows with their calls)."""
    content = f"{message.author}: {message.content}" if message.author else message.content
    tool = message.tool
    if tool is None:
        return {"role": message.role, "content": content}
    if message.role == "tool":
        return {
            "role": "tool", "tool_call_id": str(tool.get("call_id", "")),
            "name": str(tool.get("name", "")), "content": content or NO_RESULT,
        }  # fmt: skip
    calls = [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in tool.get("calls", [])
    ]  # fmt: skip
    return {"role": message.role, "content": content, "tool_calls": calls}


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


def _alternating(messages: list[Message]) -> list[Message]:
    """Messages with no empty one and no two of the same role in a row (merged): strict
    templates (Mistral, Llama 2) refuse anything but system? (user assistant)* user."""
    result: list[Message] = []
    for message in messages:
        tooled = "tool_calls" in message or message["role"] == "tool"
        if not message["content"] and not tooled and not message.get("images"):
            continue  # a reply cut before its first token
        if tooled or (result and ("tool_calls" in result[-1] or result[-1]["role"] == "tool")):
            result.append(message)  # a tool round's rows stay as they are, in order
        elif result and result[-1]["role"] == message["role"]:
            merged: Message = {
                "role": message["role"],
                "content": f"{result[-1]['content']}\n\n{message['content']}",
            }
            pictures = [*result[-1].get("images", []), *message.get("images", [])]
            if pictures:
                merged["images"] = pictures
            result[-1] = merged
        else:
            result.append(message)
    return result


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
        shown, extra = await self._pictures(rows, backend)
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
        messages = _alternating(
            [
                system,
                *example_messages(settings.examples),
                *(self._pictured(r, shown) for r in rows),
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

    async def _pictures(
        self, rows: Sequence[StoredMessage], backend: Backend
    ) -> tuple[dict[int, list[Image]], dict[int, int]]:
        """For the rows with pictures: those the prompt shows (in the newest [vision]
        keep_turns user messages, to a model that can see) and each such row's tokens beyond
        its text's: its pictures', or its placeholder's (older pictures stop costing window)."""
        pictured = [r for r in rows if r.images]
        if not pictured:
            return {}, {}
        keep = self._vision.keep_turns
        recent = {r.id for r in [r for r in rows if r.role == "user"][-keep:]} if keep else set()
        sees = isinstance(backend, Vision) and await backend.vision_support() is None
        wanted = [i for r in pictured if sees and r.id in recent for i in r.images]
        loaded = await self._store().images.load(wanted) if wanted else {}
        shown: dict[int, list[Image]] = {}
        extra: dict[int, int] = {}
        for row in pictured:
            if sees and row.id in recent and isinstance(backend, Vision):
                shown[row.id] = [loaded[i] for i in row.images if i in loaded]
                extra[row.id] = sum([await backend.image_tokens(i) for i in shown[row.id]])
            else:
                plain = self._render(row)
                marked = self._pictured(row, shown)
                extra[row.id] = await backend.message_tokens(marked) - await backend.message_tokens(
                    plain
                )
        return shown, extra

    def _pictured(self, row: StoredMessage, shown: Mapping[int, list[Image]]) -> Message:
        """A row as the prompt has it: with its pictures while they are shown, else with a
        placeholder where they were."""
        message = self._render(row)
        if not row.images:
            return message
        if row.id in shown:
            return {**message, "images": shown[row.id]}
        return {**message, "content": f"{message['content']}\n{PICTURE_PLACEHOLDER}"}

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
