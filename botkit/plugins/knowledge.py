"""Memory and knowledge, shown: /memory, /docs, /sources and /embed.

Retrieval-augmented generation as the workshop explains it: what fell out of the window is
recalled, a chat's documents are searched (keywords and vectors, fused), and what is found is
given to the model as quoted context before the new message. These commands turn it on and
off, manage the documents, show what the last reply was given and why, and show the vectors
that similarity is measured on.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from botkit.core.commands import CommandError, Plugin
from botkit.core.context import Context
from botkit.retrieval.embedder import EmbedderError
from botkit.retrieval.refusal import DocumentRefused
from botkit.retrieval.service import Given, SourcesReport
from botkit.store.documents import DocumentInfo

__all__ = ["plugin"]

plugin = Plugin("knowledge", help="Memory and documents (retrieval)", internal=True)

ADD_HELP = (
    "send a file with the command: Telegram, a document captioned /docs add; Discord, /docs "
    "add with its file option (or a message /docs add with the file attached). On the bot's "
    "machine: botkit docs add FILE --chat KEY"
)
EMBED_USAGE = "/embed <text> | <other text>, e.g. /embed My dog is Biscuit | What is my dog called?"
EmbedText = Annotated[str, Field(min_length=3, max_length=2000)]


def _size(count: int) -> str:
    return f"{count / 1024:.0f} KB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


def _document_line(number: int, doc: DocumentInfo) -> str:
    pages = f", {doc.pages} pages" if doc.pages else ""
    scope = "  (the bot's, for every chat)" if doc.chat_id is None else ""
    return (
        f"  {number}. {doc.title} — {doc.kind}, {_size(doc.size)}{pages}, {doc.chunks} "
        f"chunks, {doc.tokens:,} tokens, added {doc.created_at:%Y-%m-%d}{scope}"
    )


@plugin.command("memory", changes_settings=True)
async def memory(ctx: Context, state: Literal["on", "off"] | None = None) -> str:
    """Recall of messages that fell out of the window: show, on or off.

    While on, messages older than the kept window that are relevant to a new one are given
    to the model before it, quoted with their date and speaker ([memory] budget tokens)."""
    if state is not None:
        on = state == "on"
        await ctx.store.set_setting(
            ctx.chat.id, "memory", None if on == ctx.defaults.memory else on
        )
        if on:
            return (
                f"Memory on: up to {ctx.retrieval.memory.budget} tokens of this chat's older "
                "messages are recalled when relevant (/sources shows what)."
            )
        return "Memory off: the model sees only the kept window of this chat."
    chunks, embedded = await ctx.store.chunks.count(ctx.chat.id, "memory")
    state_now = "on" if ctx.settings.memory else "off"
    return (
        f"Memory is {state_now} in this chat: {chunks} messages indexed ({embedded} with "
        f"vectors), up to {ctx.retrieval.memory.budget} tokens recalled per message. "
        "Change it: /memory on or /memory off"
    )


@plugin.command("docs", changes_settings=True, takes_file=True)
async def docs(
    ctx: Context,
    action: Literal["add", "remove", "clear"] | None = None,
    number: Annotated[int, Field(ge=1, le=100_000)] | None = None,
) -> str:
    """This chat's documents: list, add (with a file), remove N, clear.

    The model is given the passages relevant to each message, numbered to cite as [n]."""
    library = ctx.library
    try:
        if action == "add":
            return await _add(ctx)
        if action == "remove":
            if number is None:
                raise CommandError("say which: /docs remove N (/docs lists the numbers)")
            removed = await library.remove(ctx.chat.id, number)
            return f"Removed {removed.title} ({removed.chunks} chunks)."
        if number is not None:
            raise CommandError(f"only /docs remove takes a number (got {number})")
        if action == "clear":
            count = await library.clear(ctx.chat.id)
            return f"{count} documents removed from this chat."
    except DocumentRefused as exc:
        raise CommandError(str(exc)) from None
    documents = await ctx.store.documents.of_chat(ctx.chat.id)
    if not documents:
        return f"No documents in this chat. To add one, {ADD_HELP}."
    knowledge = ctx.retrieval.knowledge
    lines = [
        f"Documents ({len(documents)}; passages of up to {knowledge.chunk_tokens} tokens, "
        f"{knowledge.budget} tokens of them per message):",
        *(_document_line(n, d) for n, d in enumerate(documents, 1)),
        "Change them: /docs add (with a file), /docs remove N, /docs clear",
    ]
    return "\n".join(lines)


async def _add(ctx: Context) -> str:
    files = ctx.incoming.attachments
    if not files:
        raise CommandError(f"/docs add needs a file: {ADD_HELP}")
    library = ctx.library
    lines = []
    for attachment in files:
        library.check_size(attachment.name, attachment.size)
        data = await attachment.read(library.limits.max_bytes)
        info = await library.add(ctx.chat.id, attachment.name, data, attachment.mime)
        pages = f", {info.pages} pages" if info.pages else ""
        lines.append(
            f"Added {info.title}{pages}: {info.chunks} chunks, {info.tokens:,} tokens. Found by "
            "its keywords now, by meaning once its vectors are made (/docs lists it)."
        )
    return "\n".join(lines)


def _scores(given: Given) -> str:
    hit = given.candidate.hit
    parts = []
    if hit.keyword_rank is not None and hit.keyword_score is not None:
        parts.append(f"keyword #{hit.keyword_rank} ({hit.keyword_score:.2f})")
    else:
        parts.append("no keyword match")
    if hit.similarity is not None and hit.vector_rank is not None:
        parts.append(f"vector #{hit.vector_rank} (cosine {hit.similarity:.2f})")
    parts.append(f"fused {hit.score:.4f}")
    return ", ".join(parts)


def _preview(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _entry(given: Given) -> str:
    chunk = given.candidate.chunk
    if given.candidate.source == "memory":
        label = f"{chunk.created_at:%Y-%m-%d %H:%M} {chunk.author or ''}".strip()
    else:
        page = f" p. {chunk.page}" if chunk.page else ""
        label = f"[{given.number}] {chunk.title}{page}" if given.used else f"{chunk.title}{page}"
    mark = "✓" if given.used else "✗"
    cost = f", {given.tokens} tokens" if given.tokens is not None else ""
    why = "" if given.used else f" — left out: {given.why}"
    return f"  {mark} {label}: {_scores(given)}{cost}{why}\n      “{_preview(chunk.text)}”"


def _report(report: SourcesReport) -> str:
    lines = [
        f"The last reply was given {report.tokens} tokens of retrieved text for "
        f"“{_preview(report.query, 60)}” ({report.at:%H:%M:%S} UTC):"
    ]
    for source, entries, budget in (
        ("Recalled messages", report.memory, report.memory_budget),
        ("Document passages", report.knowledge, report.knowledge_budget),
    ):
        if not budget:
            continue
        given = sum(1 for g in entries if g.used)
        lines.append(f"{source} (budget {budget} tokens): {given} given of {len(entries)} found")
        lines += [_entry(g) for g in entries[:12]]
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines)


@plugin.command("sources")
async def sources(ctx: Context) -> str:
    """What the last reply was given from memory and documents: each passage's keyword rank,
    vector similarity and fused score, and why one was left out."""
    report = ctx.retrieval.sources(ctx.chat.id)
    if report is None:
        on = "on" if ctx.settings.memory else "off"
        return (
            "No retrieval for a reply in this chat since the bot started (memory is "
            f"{on}; /docs lists the documents)."
        )
    return _report(report)


@plugin.command("embed", uses_model=True)
async def embed(ctx: Context, texts: EmbedText) -> str:
    """How alike two texts are to the embedder: /embed <text> | <other text>.

    Each text becomes a vector (a list of numbers); the cosine of the angle between them is 1
    for the same direction and near 0 for unrelated texts. Vector search ranks by it."""
    parts = [p.strip() for p in texts.split("|")]
    if len(parts) != 2 or not all(parts):
        raise CommandError(f"give two texts with | between them. Usage: {EMBED_USAGE}")
    embedder = ctx.retrieval.live_embedder
    if embedder is None:
        why = ctx.retrieval.embedder_failure or "[retrieval] vectors = false in the config"
        raise CommandError(f"there is no embedder ({why}); retrieval uses keywords only")
    try:
        vectors = [await ctx.retrieval.query_vector(text) for text in parts]
    except EmbedderError as exc:
        raise CommandError(f"the embedder failed: {exc}") from None
    cosine = float(np.dot(vectors[0], vectors[1]))
    head = ", ".join(f"{x:+.3f}" for x in vectors[0][:4])
    return (
        f"Cosine similarity: {cosine:.3f} (1 = same direction, 0 = unrelated) by "
        f"{embedder.name}.\nEach text is a vector of {embedder.dimensions} numbers; the "
        f"first begins [{head}, …]. Vector search ranks passages by this cosine with the "
        "message; /sources shows it for the last reply."
    )
