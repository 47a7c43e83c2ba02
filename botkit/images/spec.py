"""What an image is between the platforms, the store, the core and the backends: the bytes
botkit re-encoded itself (never the user's file as sent), with what a backend needs to send
them and what /context shows."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

__all__ = ["Image", "ImageMime"]

# What botkit re-encodes every image to: PNG (lossless: drawings, screenshots) or JPEG (photos).
ImageMime = Literal["image/png", "image/jpeg"]


@dataclass(frozen=True, slots=True)
class Image:
    """A decoded, checked and re-encoded image (no EXIF, one frame, within the pixel limit).

    sha256: of data, its identity in the store (the same picture sent twice is stored once).
    """

    sha256: str
    mime: ImageMime
    width: int
    height: int
    data: bytes

    @property
    def base64(self) -> str:
        """data in base64 (Ollama's `images`, the inside of a data URI)."""
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_uri(self) -> str:
        """data as a data URI (OpenAI's `image_url.url`)."""
        return f"data:{self.mime};base64,{self.base64}"

    def __repr__(self) -> str:  # never the bytes in a log line
        size = f"{self.width}×{self.height}, {len(self.data)} B"
        return f"Image({self.sha256[:12]}…, {self.mime}, {size})"
