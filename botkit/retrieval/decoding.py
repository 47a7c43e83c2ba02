"""Bytes to text for the text formats: UTF-8 (with or without BOM) or UTF-16 with a BOM.

Anything else is refused rather than guessed: a guessed legacy encoding turns into mojibake
that is then indexed and quoted to the model as if it were the document.
"""

from __future__ import annotations

import codecs
import re

from botkit.retrieval.refusal import DocumentRefused

__all__ = ["ENCODINGS", "declared_html_charset", "decode_text"]

ENCODINGS = "UTF-8 (with or without a BOM) or UTF-16 with a BOM"

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Controls that do not occur in text (tab, newlines, form feed and escape do; NUL never).
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def declared_html_charset(data: bytes) -> str | None:
    """The charset an HTML file declares in a <meta> near its top, if any."""
    found = _META_CHARSET.search(data[:4096])
    return found.group(1).decode("ascii").lower() if found else None


def decode_text(name: str, data: bytes, declared: str | None = None) -> str:
    """The file's text; DocumentRefused for binary content or an encoding not accepted.

    `declared` is an encoding the file itself names (an HTML <meta charset>): used, strictly,
    when there is no BOM and the bytes are not UTF-8.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                raise DocumentRefused(
                    f"{name} starts with a {codec.upper()} byte-order mark but is not valid "
                    f"{codec.upper()} (at byte {exc.start}); save it as {ENCODINGS}."
                ) from None
            return _checked_text(name, text)
    if b"\x00" in data:
        raise DocumentRefused(
            f"{name} contains NUL bytes: it looks like a binary file, not text "
            f"(UTF-16 needs a byte-order mark). {_accepted()}"
        )
    try:
        return _checked_text(name, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        problem = f"{name} is not valid UTF-8 (byte 0x{bad} at offset {exc.start})"
    if declared and declared.replace("-", "").replace("_", "") not in {"utf8", "utf16"}:
        try:
            return _checked_text(name, data.decode(declared))
        except (LookupError, UnicodeDecodeError):
            problem += f" nor valid in the {declared} it declares"
    raise DocumentRefused(f"{problem}; accepted encodings: {ENCODINGS}. Re-save it as UTF-8.")


def _checked_text(name: str, text: str) -> str:
    found = _BINARY.search(text)
    if found:
        raise DocumentRefused(
            f"{name} contains control character U+{ord(found.group()):04X} at character "
            f"{found.start()}: it looks like a binary file, not text. {_accepted()}"
        )
    return text


def _accepted() -> str:
    return f"Send a text file in {ENCODINGS}, or a PDF or HTML file."
