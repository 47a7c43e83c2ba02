"""The `[vision]` section: what an image may be, how long it stays in the prompt, and which
backend describes one for a chat model that cannot see."""

from __future__ import annotations

from pydantic import Field

from botkit.config.section import Section

__all__ = ["VisionConfig"]


class VisionConfig(Section):
    """Images in chats."""

    # A backend ([backends.NAME]) that can see, which describes an image in words for a chat
    # whose model cannot (the description then goes to the chat's model, and the reply says
    # so). None: such a chat is told its model cannot see, and which configured one can.
    backend: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Images older than this many turns are replaced in the prompt by a short text
    # placeholder, so old pictures stop costing window (they stay stored).
    keep_turns: int = Field(default=2, ge=0, le=1000)
    # Limits on what a user sends: the file's bytes, and the decoded picture's pixels (a
    # decompression bomb is refused before it is decoded in full).
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    max_pixels: int = Field(default=40_000_000, ge=10_000, le=400_000_000)
    # The longest side of the image as stored and sent (larger ones are scaled down first:
    # vision models resize to a few hundred pixels anyway).
    max_side: int = Field(default=1536, ge=64, le=8192)
    # Images per message, at most.
    max_images: int = Field(default=4, ge=1, le=16)
