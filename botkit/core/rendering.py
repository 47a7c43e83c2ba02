"""How stored messages become the messages a model is given: a tool round's rows with their
calls, pictures shown or replaced by a placeholder, few-shot pairs, and the merging strict
chat templates need."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from botkit.backends.base import Backend, Message, Vision
from botkit.core.settings import Example
from botkit.images.spec import Image
from botkit.store.repository import Repository, StoredMessage

__all__ = [
    "NO_RESULT",
    "PICTURE_PLACEHOLDER",
    "alternating",
    "example_messages",
    "pictured",
    "pictures",
    "render",
]


def example_messages(examples: Sequence[Example]) -> list[Message]:
    """Few-shot examples as the user/assistant pairs that follow the persona."""
    messages: list[Message] = []
    for said, answered in examples:
        messages.append({"role": "user", "content": said})
        messages.append({"role": "assistant", "content": answered})
    return messages


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


def alternating(messages: list[Message]) -> list[Message]:
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


def pictured(message: Message, row: StoredMessage, shown: Mapping[int, list[Image]]) -> Message:
    """A row's message as the prompt has it: with its pictures while they are shown, else with
    a placeholder where they were."""
    if not row.images:
        return message
    if row.id in shown:
        return {**message, "images": shown[row.id]}
    return {**message, "content": f"{message['content']}\n{PICTURE_PLACEHOLDER}"}


async def pictures(
    rows: Sequence[StoredMessage],
    backend: Backend,
    keep_turns: int,
    store: Callable[[], Repository],
    rendered: Callable[[StoredMessage], Message] = render,
) -> tuple[dict[int, list[Image]], dict[int, int]]:
    """For the rows with pictures: those the prompt shows (in the newest [vision]
    keep_turns user messages, to a model that can see) and each such row's tokens beyond
    its text's: its pictures', or its placeholder's (older pictures stop costing window)."""
    with_pictures = [r for r in rows if r.images]
    if not with_pictures:
        return {}, {}
    users = [r for r in rows if r.role == "user"]
    recent = {r.id for r in users[-keep_turns:]} if keep_turns else set()
    sees = isinstance(backend, Vision) and await backend.vision_support() is None
    wanted = [i for r in with_pictures if sees and r.id in recent for i in r.images]
    loaded = await store().images.load(wanted) if wanted else {}
    shown: dict[int, list[Image]] = {}
    extra: dict[int, int] = {}
    for row in with_pictures:
        if sees and row.id in recent and isinstance(backend, Vision):
            shown[row.id] = [loaded[i] for i in row.images if i in loaded]
            extra[row.id] = sum([await backend.image_tokens(i) for i in shown[row.id]])
        else:
            plain = rendered(row)
            marked = pictured(plain, row, shown)
            extra[row.id] = await backend.message_tokens(marked) - await backend.message_tokens(
                plain
            )
    return shown, extra
