"""Image files made in the test, good and bad: Pillow's own encoders for the good ones, PNG
chunks written by hand for the ones no encoder would write (a bomb, an overflowing stream)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image as PilImage

__all__ = ["chunk", "encoded", "png_chunks", "zero_png"]


def encoded(picture: PilImage.Image, fmt: str, **options: Any) -> bytes:
    """picture saved as fmt (Pillow's name) with options."""
    out = io.BytesIO()
    picture.save(out, fmt, **options)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk."""
    # https://www.w3.org/TR/png/#5Chunk-layout: length, type, data, CRC of type and data.
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(width: int, height: int, idat: bytes, *, before: bytes = b"") -> bytes:
    """An 8-bit greyscale PNG of width × height whose image data is idat (compressed), with
    the chunks `before` ahead of it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + before
        + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )  # fmt: skip


def zero_png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A real greyscale PNG of width × height, all black, its data compressed the way an
    encoder would (rows: how many rows of data to write, default all of them)."""
    squeeze = zlib.compressobj(6)
    left = height if rows is None else rows
    block = b"\0" * (width + 1) * 1000  # rows: filter byte 0, then the samples
    parts = []
    while left > 0:
        parts.append(squeeze.compress(block[: (width + 1) * min(left, 1000)]))
        left -= 1000
    return png_chunks(width, height, b"".join([*parts, squeeze.flush()]))
