"""Reading an uploaded file into a Document: its plain text, safely.

`check_size` refuses a file by its declared size before it is downloaded; `read_document`
sniffs the format from the content (the name and MIME type are hints), decodes text files
here and parses PDF and HTML in a bounded child process (`isolation`). Every refusal is a
DocumentRefused whose message says what is wrong and what is allowed.

The text is data: nothing in it is interpreted, and nothing that carries meaning is dropped
(only line endings are normalised to "\\n").
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydantic import Field

from botkit.config.section import Section
from botkit.retrieval.decoding import declared_html_charset, decode_text
from botkit.retrieval.isolation import Bounds, parse_isolated
from botkit.retrieval.parsers import Parsed
from botkit.retrieval.refusal import ACCEPTED, DocumentRefused
from botkit.retrieval.sniff import Kind, detect_kind

__all__ = [
    "Document",
    "DocumentLimits",
    "DocumentRefused",
    "Kind",
    "check_size",
    "read_document",
]

PDF_PARSER = "botkit.retrieval.parsers:parse_pdf"
HTML_PARSER = "botkit.retrieval.parsers:parse_html"


class DocumentLimits(Section):
    """What one uploaded document may be."""

    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_pages: int = Field(default=300, ge=1, le=100_000)
    max_chars: int = Field(default=2_000_000, ge=1_000, le=100_000_000)
    # Wall clock for parsing one PDF or HTML file, the reader process's start included.
    timeout: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    # The reader process's address space: a decompression bomb stops there.
    max_memory_mb: int = Field(default=1024, ge=256, le=65536)


@dataclass(frozen=True, slots=True)
class Document:
    """A file's plain text; for a PDF, its page count and where each page starts in text."""

    title: str  # the file's name, without any folders
    kind: Kind
    text: str
    pages: int | None = None
    page_starts: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that the character at offset is on (None: not a PDF)."""
        if not self.page_starts:
            return None
        return max(1, bisect_right(self.page_starts, offset))


def check_size(name: str, size: int, limits: DocumentLimits) -> None:
    """Refuse a file by its (declared) size, before downloading or reading it."""
    if size > limits.max_bytes:
        raise DocumentRefused(
            f"{name} is {_size(size)}; documents may be at most {_size(limits.max_bytes)}."
        )
    if size == 0:
        raise DocumentRefused(f"{name} is empty. {ACCEPTED}, with some text in them.")


async def read_document(
    name: str, data: bytes, limits: DocumentLimits, mime: str | None = None
) -> Document:
    """The document in data (a file called name, of MIME type mime if the sender said)."""
    title = PurePosixPath(name.replace("\\", "/")).name or "document"
    check_size(title, len(data), limits)
    if not data.strip():
        raise DocumentRefused(f"{title} holds only whitespace. {ACCEPTED}, with some text.")
    kind = detect_kind(title, data, mime)
    bounds = Bounds(
        timeout=limits.timeout,
        memory_bytes=limits.max_memory_mb * 1024 * 1024,
        max_pages=limits.max_pages,
        max_chars=limits.max_chars,
    )
    if kind == "pdf":
        parsed = await parse_isolated(PDF_PARSER, title, data, bounds)
    else:
        declared = declared_html_charset(data) if kind == "html" else None
        text = _newlines(decode_text(title, data, declared))
        if not text.strip():
            raise DocumentRefused(f"{title} holds only whitespace. {ACCEPTED}, with some text.")
        if kind == "html":
            parsed = await parse_isolated(HTML_PARSER, title, text.encode(), bounds)
        else:
            parsed = Parsed(text)
    text = parsed.text
    if len(text) > limits.max_chars:
        raise DocumentRefused(
            f"{title} is too long: {len(text):,} characters of text, and the limit is "
            f"{limits.max_chars:,}. Split it and send the parts."
        )
    return Document(title, kind, text, parsed.pages, parsed.page_starts)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"
