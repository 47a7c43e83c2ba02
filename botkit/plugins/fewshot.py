"""Teach by example: /examples keeps a chat's few-shot examples (in-context learning).

Each example is a user/assistant pair placed right after the persona in every prompt of the
chat (core/conversation.py), counted in /context and never trimmed before the history. They are
a chat setting like the persona (ChatSettings.examples, stored with the chat's overrides), so
they survive restarts and need the settings permission to change in groups.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from botkit.core.commands import CommandError, Plugin
from botkit.core.context import Context
from botkit.core.planner import example_messages
from botkit.core.settings import EXAMPLE_MAX_CHARS, MAX_EXAMPLES, Example
from botkit.plugins.builtin import check_fixed_cost

__all__ = ["plugin"]

plugin = Plugin("fewshot", help="Teach the model by examples", internal=True)

SEPARATOR = "=>"
ADD_USAGE = "/examples add <input> => <output>, e.g. /examples add I loved this movie! => Positive"
Action = Literal["add", "remove", "clear"]
Rest = Annotated[str, Field(min_length=1, max_length=2 * EXAMPLE_MAX_CHARS + 20)]


async def _tokens(ctx: Context, examples: tuple[Example, ...]) -> list[int]:
    """Each pair's cost in the prompt, with the chat template's framing."""
    messages = example_messages(examples)
    counts = [await ctx.backend.message_tokens(m) for m in messages]
    return [counts[i] + counts[i + 1] for i in range(0, len(counts), 2)]


def _parse(text: str | None) -> Example:
    if text is None:
        raise CommandError(f"add needs an example. Usage: {ADD_USAGE}")
    parts = text.split(SEPARATOR)
    if len(parts) != 2:
        found = len(parts) - 1
        raise CommandError(
            f"put {SEPARATOR} exactly once between the input and the output (found {found}). "
            f"Usage: {ADD_USAGE}"
        )
    said, answered = (part.strip() for part in parts)
    for side, value in (("input", said), ("output", answered)):
        if not value:
            raise CommandError(f"the {side} before/after {SEPARATOR} is empty. Usage: {ADD_USAGE}")
        if len(value) > EXAMPLE_MAX_CHARS:
            raise CommandError(
                f"the {side} is {len(value)} characters; each side is at most {EXAMPLE_MAX_CHARS}"
            )
    return said, answered


async def _store(ctx: Context, examples: tuple[Example, ...]) -> None:
    default = ctx.defaults.examples
    await ctx.store.set_setting(ctx.chat.id, "examples", None if examples == default else examples)


async def _add(ctx: Context, text: str | None) -> str:
    example = _parse(text)
    current = ctx.settings.examples
    if len(current) >= MAX_EXAMPLES:
        raise CommandError(
            f"this chat has {len(current)} examples, the most allowed ({MAX_EXAMPLES}): "
            "/examples remove N or /examples clear first"
        )
    examples = (*current, example)
    costs = await _tokens(ctx, examples)
    await check_fixed_cost(ctx, ctx.settings.model_copy(update={"examples": examples}))
    await _store(ctx, examples)
    return (
        f"example {len(examples)} added ({costs[-1]} tokens; {len(examples)} in all, "
        f"{sum(costs)} tokens): {example[0]} {SEPARATOR} {example[1]}"
    )


async def _remove(ctx: Context, text: str | None) -> str:
    current = ctx.settings.examples
    if not current:
        raise CommandError("this chat has no examples to remove")
    allowed = f"1 to {len(current)}" if len(current) > 1 else "1"
    if text is None or not text.strip().isdigit() or not 1 <= int(text) <= len(current):
        raise CommandError(
            f"remove takes the number of an example: {allowed} (/examples lists them)"
        )
    index = int(text) - 1
    said, answered = current[index]
    await _store(ctx, current[:index] + current[index + 1 :])
    return f"example {index + 1} removed: {said} {SEPARATOR} {answered}"


async def _list(ctx: Context) -> str:
    current = ctx.settings.examples
    if not current:
        return f"No examples in this chat: the model answers zero-shot. Add one with {ADD_USAGE}"
    costs = await _tokens(ctx, current)
    lines = [
        f"Few-shot examples ({len(current)} of at most {MAX_EXAMPLES}, {sum(costs)} tokens), "
        "sent as user/assistant turns after the persona in every prompt:"
    ]
    lines += [
        f"  {n}. {said} {SEPARATOR} {answered}  ({cost} tokens)"
        for n, ((said, answered), cost) in enumerate(zip(current, costs, strict=True), 1)
    ]
    lines.append("Change them: /examples add <input> => <output>, remove N, clear")
    return "\n".join(lines)


@plugin.command("examples", changes_settings=True)
async def examples(ctx: Context, action: Action | None = None, text: Rest | None = None) -> str:
    """Few-shot examples for this chat: list, add <input> => <output>, remove N, clear.

    They go into every prompt as user/assistant turns right after the persona."""
    if action is None:
        if text is not None:
            raise CommandError("say what to do: /examples add, remove or clear")
        return await _list(ctx)
    if action == "add":
        return await _add(ctx, text)
    if action == "remove":
        return await _remove(ctx, text)
    if text is not None:
        raise CommandError(f"/examples clear takes nothing after it (got {text!r})")
    removed = len(ctx.settings.examples)
    await _store(ctx, ())
    return f"{removed} examples cleared: the model answers zero-shot again"
