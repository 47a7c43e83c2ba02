"""Which format a file is, by its content, with its name and MIME type as hints.

The content decides: a `.txt` that starts with `%PDF-` or `PK\\x03\\x04` is not text, and is
refused with what it really is rather than read as garbage. For the text formats, which the
content cannot tell apart reliably, the name (then the MIME type) says which.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from botkit.retrieval.refusal import ACCEPTED, DocumentRefused

__all__ = ["Kind", "detect_kind"]

Kind = Literal["txt", "md", "pdf", "html"]

_BY_SUFFIX: dict[str, Kind] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
_BY_MIME: dict[str, Kind] = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "application/pdf": "pdf",
    "text/html": "html",
    "application/xhtml+xml": "html",
}
# Signatures of formats botkit does not read (https://en.wikipedia.org/wiki/List_of_file_signatures).
_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (or .docx/.xlsx/.pptx/.odt/.epub, which are zip files)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"(\xb5/\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x7fELF", "an executable"),
)
# The PDF header may follow up to 1024 bytes of junk (PDF 32000-1:2008, annex H.3 note 1).
_PDF_WINDOW = 1024
_HTML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b",
    re.I | re.S,
)


def detect_kind(name: str, data: bytes, mime: str | None = None) -> Kind:
    """The file's format; DocumentRefused for a format botkit does not read or a name that
    claims one format for content of another that matters (a .txt that is a PDF)."""
    hinted = _hint(name, mime)
    for magic, what in _UNSUPPORTED:
        if data.startswith(magic):
            raise DocumentRefused(f"{name} is {what}, which is not supported; {ACCEPTED}.")
    if data[4:8] == b"ftyp":
        raise DocumentRefused(f"{name} is a video or HEIC image, not supported; {ACCEPTED}.")
    if data.startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        raise DocumentRefused(f"{name} is a media file, which is not supported; {ACCEPTED}.")
    if b"%PDF-" in data[:_PDF_WINDOW]:
        if hinted not in (None, "pdf"):
            raise DocumentRefused(
                f"{name} is named as a .{hinted} file but its content is a PDF; "
                "rename it to .pdf and send it again."
            )
        return "pdf"
    if hinted == "pdf":
        raise DocumentRefused(
            f"{name} is named as a PDF but is not one (no %PDF- header): it may be damaged or "
            f"another format renamed; {ACCEPTED}."
        )
    if hinted is not None:
        return hinted
    return "html" if _HTML_START.match(data[:4096]) else "txt"


def _hint(name: str, mime: str | None) -> Kind | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if mime:
        return _BY_MIME.get(mime.split(";")[0].strip().lower())
    return None
