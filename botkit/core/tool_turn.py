"""A turn's tool rounds: the model's calls stored ahead, run, shown in the reply as they
happen, and their results given back to the model as data.

One round: the reply row that was being generated becomes the row of the calls; a result row
per call and the next reply row are written ahead in one transaction (Turns.tool_round); each
call runs (Toolbox.run: validated, rate-limited, confirmed, timed out, cut) and its row is
finished with the result. The next generation sees the calls and results after the history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from botkit.backends.base import Backend, ContextOverflow, Message, Role
from botkit.core.streaming import ReplyStream
from botkit.core.turn_source import TurnSource
from botkit.store.models import MessageStatus
from botkit.store.records import NewMessage
from botkit.store.repository import Repository
from botkit.tools.box import Toolbox
from botkit.tools.spec import ToolCall, ToolResult, ToolSpec, wire_call

__all__ = [
    "RoundState", "call_message", "check_room", "fits", "result_message", "run_round",
    "shown_call",
]  # fmt: skip

_SHOWN_ARGS = 120  # characters of a call's arguments shown in the reply
_SHOWN_RESULT = 160  # characters of its result


@dataclass
class RoundState:
    """What a turn's tool rounds have done so far."""

    rounds: int = 0
    calls: int = 0
    seconds: float = 0.0  # in the tools themselves (for /stats)
    pending: list[int] = field(default_factory=list)  # result rows written, not yet finished


def call_message(text: str, calls: Sequence[ToolCall]) -> Message:
    """The assistant message of a round: what the model said, then its calls."""
    return {"role": "assistant", "content": text, "tool_calls": [wire_call(c) for c in calls]}


def result_message(result: ToolResult) -> Message:
    """A call's result as the tool message the model is given."""
    return {
        "role": "tool",
        "tool_call_id": result.call_id,
        "name": result.name,
        "content": result.content,
    }


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def shown_call(call: ToolCall) -> str:
    """A call as the reply shows it: name(arguments), the arguments cut short."""
    try:
        args = json.dumps(call.parsed(), ensure_ascii=False)[1:-1]
    except ValueError:
        args = call.arguments
    return f"{call.name}({_short(args, _SHOWN_ARGS)})"


def _shown_result(result: ToolResult) -> str:
    mark = "⚠ " if result.is_error else ""
    return f"{mark}{_short(result.content, _SHOWN_RESULT)} ({result.seconds:.2f} s)"


async def run_round(
    ctx: TurnSource,
    backend: Backend,
    repo: Repository,
    toolbox: Toolbox,
    reply_id: int,
    text: str,
    calls: Sequence[ToolCall],
    offered: Sequence[ToolSpec],
    stream: ReplyStream,
    state: RoundState,
) -> tuple[int, list[Message]]:
    """Store the round's calls ahead, run them one by one (showing each in the reply), store
    their results. Returns the next reply row's id and the messages the round adds."""
    over = calls[toolbox.max_calls :]
    calls = calls[: toolbox.max_calls]
    call = call_message(text, calls)
    tokens = await backend.message_tokens(call)
    call_row = NewMessage(
        Role.ASSISTANT, None, text, tokens, backend.tokenizer_id, MessageStatus.COMPLETE,
        tool={"calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]},
    )  # fmt: skip
    waiting = [
        NewMessage(Role.TOOL, None, "", 0, "", MessageStatus.GENERATING,
                   tool={"call_id": c.id, "name": c.name})
        for c in calls
    ]  # fmt: skip
    result_ids, next_reply = await repo.tool_round(ctx.chat.id, reply_id, call_row, waiting)
    state.pending.extend(result_ids)
    state.rounds += 1
    added: list[Message] = [call]
    for made, row_id in zip(calls, result_ids, strict=True):
        await stream.append(f"\n🔧 {shown_call(made)}")
        await stream.flush()
        result = await toolbox.run(ctx, made, offered, stream.append)
        state.seconds += result.seconds
        state.calls += 1
        await stream.append(f" → {_shown_result(result)}\n")
        message = result_message(result)
        row = NewMessage(
            Role.TOOL, None, result.content, await backend.message_tokens(message),
            backend.tokenizer_id, MessageStatus.COMPLETE,
            tool={"call_id": made.id, "name": made.name, "error": result.is_error},
        )  # fmt: skip
        await repo.finish_result(ctx.chat.id, row_id, row)
        state.pending.remove(row_id)
        added.append(message)
    if over:
        names = ", ".join(c.name for c in over)
        await stream.append(f"\n⚠ {len(over)} more call(s) not run ({names}): at most "
                            f"{toolbox.max_calls} per round\n")  # fmt: skip
    return next_reply, added


async def fits(
    backend: Backend, messages: Sequence[Message], tools_tokens: int, reserve: int
) -> bool:
    """Whether the prompt, the tools' declarations and the reply reserve fit the window."""
    return await backend.count_tokens(messages) + tools_tokens + reserve <= backend.context_window


async def check_room(
    backend: Backend, messages: Sequence[Message], tools_tokens: int, reserve: int
) -> None:
    """Refuse a next round whose prompt (with the results) leaves no room for the reply."""
    needed = await backend.count_tokens(messages) + tools_tokens + reserve
    if needed > backend.context_window:
        raise ContextOverflow(
            f"the tools' results take the prompt to {needed - reserve} tokens: with "
            f"{reserve} reserved for the reply that is more than the "
            f"{backend.context_window}-token window. Lower [tools] max_result_chars, or ask "
            "for less at once"
        )
