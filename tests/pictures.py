"""Real small pictures for tests: PNG and JPEG bytes made with Pillow, as botkit's Image."""

from __future__ import annotations

import hashlib
import io

from PIL import Image as PILImage

from botkit.images.spec import Image, ImageMime

__all__ = ["picture"]


def picture(side: int = 16, colour: tuple[int, int, int] = (200, 30, 30),
            mime: ImageMime = "image/png") -> Image:  # fmt: skip
    """A side × side picture of one colour with a white diagonal, encoded as mime."""
    drawn = PILImage.new("RGB", (side, side), colour)
    for i in range(side):
        drawn.putpixel((i, i), (255, 255, 255))
    out = io.BytesIO()
    drawn.save(out, format="PNG" if mime == "image/png" else "JPEG", quality=90)
    data = out.getvalue()
    return Image(hashlib.sha256(data).hexdigest(), mime, side, side, data)
