"""The parsers of untrusted files, run only inside the reader process (see `isolation`).

Each takes the file's bytes and the limits and returns `Parsed`, or raises DocumentRefused
with a message for the user. PDF: pypdf (pure Python, so a malformed file raises rather than
crashes; its decoders stop at 75 MB of output, the first defence against decompression bombs).
HTML: readability-lxml picks the main text after botkit drops the page's landmarks (nav,
header, footer, aside, forms), which readability alone scores as text on some pages.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botkit.retrieval.refusal import DocumentRefused

if TYPE_CHECKING:
    from lxml.html import HtmlElement

__all__ = ["Parsed", "parse_html", "parse_pdf"]

# pypdf's per-stream output cap (pypdf.filters.ZLIB_MAX_OUTPUT_LENGTH and friends).
_PYPDF_STREAM_LIMIT = "75 MB"
# NUL (PostgreSQL text cannot hold it) and lone surrogates (not UTF-8), which broken font
# maps in PDFs produce.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Between pages in the text, so a page break is a paragraph break for the chunker.
PAGE_BREAK = "\n\n"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A file's text; for a PDF its page count and where each page starts in the text."""

    text: str
    pages: int | None = None
    page_starts: tuple[int, ...] = ()


def parse_pdf(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """The text of a PDF's pages, in order, separated by blank lines."""
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    # A PDF ends with %%EOF (trailing junk allowed, PDF 32000-1:2008 7.5.5); without one the
    # upload was cut, and pypdf's recovery would silently read only the pages that arrived.
    if b"%%EOF" not in data[-1024:]:
        raise DocumentRefused(
            f"{name} is truncated (it does not end with %%EOF): the upload may have been cut "
            "off. Send the complete file."
        )
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted only to carry permissions, with an empty user password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentRefused(
                f"{name} is password-protected. Remove the password (for example, print "
                "it to a new PDF) and send it again."
            )
        count = len(reader.pages)
        if count > max_pages:
            raise DocumentRefused(
                f"{name} has {count} pages; at most {max_pages} are allowed. Split it and "
                "send the parts."
            )
        texts: list[str] = []
        starts: list[int] = []
        length = 0
        for page in reader.pages:
            starts.append(length)
            text = _UNSTORABLE.sub("\ufffd", page.extract_text() or "")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            texts.append(text)
            length += len(text) + len(PAGE_BREAK)
            if length > max_chars + len(PAGE_BREAK):
                raise DocumentRefused(_too_long(name, max_chars, f"by page {len(texts)}"))
    except DocumentRefused:
        raise
    except LimitReachedError:
        raise DocumentRefused(
            f"{name} has a compressed stream that inflates beyond {_PYPDF_STREAM_LIMIT}: a "
            "decompression bomb, or far more than a document needs. It was not read."
        ) from None
    except DependencyError as exc:
        raise DocumentRefused(f"{name} uses an encryption botkit cannot open ({exc}).") from None
    except Exception as exc:  # any error of pypdf's on untrusted bytes means: not readable
        raise DocumentRefused(
            f"{name} could not be read as a PDF: it looks damaged or malformed "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if count == 0:
        raise DocumentRefused(f"{name} has no pages.")
    text = PAGE_BREAK.join(texts)
    if not text.strip():
        raise DocumentRefused(
            f"{name} has {count} page{'s' if count != 1 else ''} but no text in them: it is "
            "probably scanned images. Scanned PDFs need OCR, which botkit does not do; send a "
            "PDF with a text layer, or the text itself."
        )
    return Parsed(text=text, pages=count, page_starts=tuple(starts))


# Landmarks that are never the main text (HTML Living Standard, sectioning and ARIA roles);
# a <header> inside <article> or <main> is the article's own heading, and stays.
_BOILERPLATE = (
    "//head|//nav|//footer|//aside|//form|//template|//svg|//iframe"
    "|//header[not(ancestor::article) and not(ancestor::main)]"
    "|//*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='search']"
    "|//*[@aria-hidden='true']"
)
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul",
               "ol", "dl", "figure", "hr", "section", "article"}  # fmt: skip
_LINES = {"div", "li", "tr", "dt", "dd", "br", "figcaption", "caption", "address"}
_SPACES = re.compile(r"\s+")
# Where blocks start and end: a run of them (with the spaces around) is one line break, or a
# blank line if a paragraph-level block is in it.
_LINE, _PARAGRAPH = "\x02", "\x03"
_BREAKS = re.compile(r" *(?:[\x02\x03] *)+")


def parse_html(name: str, data: bytes, max_pages: int, max_chars: int) -> Parsed:
    """The main text of an HTML page (data: the page as UTF-8), paragraphs on blank lines."""
    from lxml import etree
    from lxml import html as lxml_html
    from readability import Document

    del max_pages  # an HTML page has no pages
    try:
        tree = lxml_html.document_fromstring(data.decode("utf-8"))
    except (etree.ParserError, ValueError) as exc:
        raise DocumentRefused(f"{name} could not be parsed as HTML ({exc}).") from None
    for element in tree.xpath(_BOILERPLATE):
        element.drop_tree()
    summary = Document(tree).summary(html_partial=True)
    article = lxml_html.fragment_fromstring(summary, create_parent="div")
    text = _render(article)
    if not text:
        raise DocumentRefused(
            f"{name} has no main text: only navigation, scripts or markup. Send the page "
            "that holds the article, or its text."
        )
    if len(text) > max_chars:
        raise DocumentRefused(_too_long(name, max_chars, f"{len(text):,} characters"))
    return Parsed(text=text)


def _render(root: HtmlElement) -> str:
    """Text with a blank line between paragraphs and a newline between lines; whitespace
    collapsed as a browser shows it, except inside <pre>."""
    from lxml import etree

    out: list[str] = []
    pre = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in _PARAGRAPHS:
            out.append(_PARAGRAPH)
        elif tag in _LINES:
            out.append(_LINE)
        if event == "start":
            pre += tag == "pre"
            if tag == "li":
                out.append("- ")
            if element.text:
                out.append(_shown(element.text, pre))
        else:
            pre -= tag == "pre"
            if element.tail:
                out.append(_shown(element.tail, pre))
    text = _BREAKS.sub(lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", "".join(out))
    return text.strip(" \n").translate(_UNPROTECT)


# Inside <pre> spaces are content (code indentation): they travel as NUL and SOH, which the
# decoded page cannot contain (decoding refuses control characters), past the line strip.
_PROTECT = str.maketrans({" ": "\x00", "\t": "\x01"})
_UNPROTECT = str.maketrans({"\x00": " ", "\x01": "\t"})


def _shown(text: str, pre: int) -> str:
    return text.translate(_PROTECT) if pre else _SPACES.sub(" ", text)


def _too_long(name: str, max_chars: int, size: str) -> str:
    return (
        f"{name} is too long: its text passes the limit of {max_chars:,} characters "
        f"({size}). Split it and send the parts."
    )
