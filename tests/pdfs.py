"""Test PDFs written with pypdf: pages of text (Helvetica), an image-only page, encryption,
a decompression bomb. No PDF library beyond the one botkit reads with."""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

from pypdf import PdfWriter
from pypdf.generic import (
    DecodedStreamObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    StreamObject,
)


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(pages: Sequence[Sequence[str]], password: str | None = None) -> bytes:
    """A PDF with one page per item, each line of it shown in Helvetica (Latin-1 text)."""
    writer = PdfWriter()
    font = _helvetica(writer)
    for lines in pages:
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 740 Td", *(f"({_escape(x)}) '" for x in lines), "ET"]
        _page(writer, "\n".join(ops).encode("latin-1"), font)
    return _written(writer, password)


def image_only_pdf(pages: int = 2) -> bytes:
    """Pages that show only an inline image (a scan has no text layer either)."""
    writer = PdfWriter()
    image = b"q 200 0 0 200 100 400 cm BI /W 2 /H 2 /CS /G /BPC 8 ID \x00\xff\xff\x00 EI Q"
    for _ in range(pages):
        _page(writer, image, None)
    return _written(writer, None)


def bomb_pdf(inflated: int = 200 * 1024 * 1024) -> bytes:
    """One page whose content stream is `inflated` bytes of spaces, FlateDecode-compressed
    (about 1000:1)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    packer = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    packed = b"".join(packer.compress(block) for _ in range(inflated // len(block)))
    stream = StreamObject()
    stream._data = packed + packer.flush()
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    # A font, so that a reader looking for text has to inflate the stream.
    fonts = DictionaryObject({NameObject("/F1"): _helvetica(writer)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    return _written(writer, None)


def _helvetica(writer: PdfWriter) -> IndirectObject:
    font = {
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }
    return writer._add_object(DictionaryObject(font))


def _page(writer: PdfWriter, content: bytes, font: IndirectObject | None) -> None:
    page = writer.add_blank_page(612, 792)
    stream = DecodedStreamObject()
    stream.set_data(content)
    page[NameObject("/Contents")] = writer._add_object(stream)
    if font is not None:
        fonts = DictionaryObject({NameObject("/F1"): font})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})


def _written(writer: PdfWriter, password: str | None) -> bytes:
    if password is not None:
        writer.encrypt(
            user_password=password, owner_password=password + "-owner", algorithm="AES-128"
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
