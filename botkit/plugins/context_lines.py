"""/context's lines for what the window gives beyond the conversation: retrieval's budgets
and what the last reply got, and the pictures in the kept history."""

from __future__ import annotations

from botkit.core.context import Context
from botkit.retrieval.service import SourcesReport

__all__ = ["picture_lines", "retrieval_lines"]


def picture_lines(tokens: int, pictures: tuple[int, int], problem: str | None) -> list[str]:
    """/context's line for the pictures in the kept history (part of its tokens)."""
    shown, placeholders = pictures
    if not shown and not placeholders:
        return []
    sees = "the model sees them" if problem is None else f"the model cannot see ({problem})"
    return [
        f"    of which pictures: {tokens} ({shown} shown, {placeholders} older ones as "
        f"placeholders after [vision] keep_turns; {sees})"
    ]


def retrieval_lines(
    ctx: Context, memory: int, knowledge: int, last: SourcesReport | None
) -> list[str]:
    """/context's lines for what retrieval keeps and what the last reply was given (two
    counts, then how it searches)."""
    state = "on" if ctx.settings.memory else "off"
    given = [g for g in last.memory if g.used] if last else []
    passages = [g for g in last.knowledge if g.used] if last else []
    lines = [
        f"  memory:         {memory} kept for recalled messages (/memory {state}); the last "
        f"reply got {sum(g.tokens or 0 for g in given)} ({len(given)} messages)",
        f"  documents:      {knowledge} kept for passages (/docs); the last reply got "
        f"{sum(g.tokens or 0 for g in passages)} ({len(passages)} passages)",
    ]
    embedder = ctx.retrieval.live_embedder
    if embedder is None:
        why = ctx.retrieval.embedder_failure or "[retrieval] vectors = false"
        lines.append(f"Retrieval: keywords only ({why}); /sources shows what was found")
    else:
        lines.append(f"Retrieval: keywords + vectors ({embedder.name}); /sources")
    return lines
