"""A user's image file made safe to keep and send: checked against the [vision] limits, decoded
once by Pillow in a worker thread, and re-encoded by botkit (one frame, upright, no metadata,
scaled down to max_side, RGB or RGBA, PNG or JPEG).

What is refused, with a message that says what is wrong and what is allowed (ImageRefused):
a file over max_bytes (before it is opened); a file that is not PNG, JPEG, WebP, GIF or BMP;
a picture of more than max_pixels pixels, read from its header before any pixel is decoded
(a decompression bomb: a small file claiming a huge picture never gets the memory it claims);
a truncated or corrupt file; a decode slower than DECODE_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time

from PIL import Image as PilImage
from PIL import ImageOps, UnidentifiedImageError

from botkit.config.vision import VisionConfig
from botkit.core.commands import CommandError
from botkit.images.spec import Image, ImageMime

__all__ = ["ACCEPTED_FORMATS", "DECODE_TIMEOUT", "ImageRefused", "prepare"]

# Pillow's names of the formats botkit opens. Not TIFF, PSD, ICO, …: no chat platform sends
# them as pictures, and each decoder is more attack surface.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# How long one decode may take. Within the pixel limit a decode takes well under a second;
# this only bounds a pathological file. The worker thread cannot be stopped, but the turn
# does not wait for it.
DECODE_TIMEOUT = 20.0
JPEG_QUALITY = 90
_ACCEPTED_TEXT = "PNG, JPEG, WebP, GIF (its first frame) or BMP"
# Modes whose samples are 16 bits (a 16-bit PNG): scaled to 8 bits, not clipped to white.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class ImageRefused(CommandError):
    """An image botkit will not take; the message says what is wrong and what is allowed."""


def _size_text(count: int) -> str:
    return f"{count:,} bytes" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


def _called(name: str) -> str:
    return f"{name} " if name else "the image "


def _has_alpha(picture: PilImage.Image) -> bool:
    return picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info


def _open(data: bytes, config: VisionConfig, name: str) -> PilImage.Image:
    """The picture, opened lazily (header only) and checked against the pixel limit."""
    try:
        # Pillow's own bomb check runs inside open: an error past twice its MAX_IMAGE_PIXELS
        # (89 M), a warning past it (an error where warnings are, as in the tests). Either is
        # refused like ours below. Not made an error here with warnings.catch_warnings: that
        # changes the process's filters under every other thread.
        picture = PilImage.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (PilImage.DecompressionBombError, PilImage.DecompressionBombWarning) as error:
        pillows = PilImage.MAX_IMAGE_PIXELS or 0
        limit = pillows * 2 if isinstance(error, PilImage.DecompressionBombError) else pillows
        raise ImageRefused(
            f"{_called(name)}is a picture of more than {limit:,} pixels; pictures of up to "
            f"{config.max_pixels:,} pixels are accepted: send a smaller one"
        ) from None
    except UnidentifiedImageError:
        raise ImageRefused(
            f"{_called(name)}is not a picture botkit can read; send a {_ACCEPTED_TEXT}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRefused(
            f"{_called(name)}is damaged or cut short ({error}); send the picture again as a "
            f"{_ACCEPTED_TEXT}"
        ) from None
    width, height = picture.size
    if width * height > config.max_pixels:
        raise ImageRefused(
            f"{_called(name)}is {width:,} × {height:,} pixels ({width * height:,}); pictures of "
            f"up to {config.max_pixels:,} pixels are accepted: send a smaller one"
        )
    if width < 1 or height < 1:
        raise ImageRefused(f"{_called(name)}has no pixels; send a {_ACCEPTED_TEXT}")
    return picture


def _target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """width × height scaled so the longest side is at most max_side (never up)."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decoded(picture: PilImage.Image, config: VisionConfig, name: str) -> PilImage.Image:
    """The first frame, decoded (a JPEG at a reduced scale when it is much larger than
    needed), upright, in RGB or RGBA, scaled to max_side."""
    if picture.format == "JPEG":
        # DCT scaling: a 8000 × 6000 photo decodes at 1/2 or 1/4 of its size, faster and in a
        # quarter of the memory, still at least as large as the target.
        picture.draft(None, _target(*picture.size, config.max_side))
    try:
        picture.seek(0)  # a GIF's (or WebP's) first frame
        picture.load()
        upright = ImageOps.exif_transpose(picture)  # a phone photo stands as it was taken
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRefused(
            f"{_called(name)}is damaged or cut short ({error}); send the picture again as a "
            f"{_ACCEPTED_TEXT}"
        ) from None
    if upright.mode in _WIDE_MODES:
        upright = upright.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    rgb = upright.convert("RGBA" if _has_alpha(upright) else "RGB")
    size = _target(*rgb.size, config.max_side)
    if size != rgb.size:
        rgb = rgb.resize(size, PilImage.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


def _encoded(picture: PilImage.Image, drawing: bool) -> tuple[ImageMime, bytes]:
    """PNG for a picture with alpha or few colours (a drawing, a screenshot), else JPEG."""
    picture.info = {}  # no EXIF, ICC profile, text chunks or comments carried over
    out = io.BytesIO()
    if picture.mode == "RGBA" or drawing:
        picture.save(out, "PNG")
        return "image/png", out.getvalue()
    picture.save(out, "JPEG", quality=JPEG_QUALITY)
    return "image/jpeg", out.getvalue()


def _prepare(data: bytes, config: VisionConfig, name: str) -> Image:
    """prepare's work, in the worker thread."""
    with _open(data, config, name) as picture:
        drawing = picture.mode in ("P", "1") or picture.format == "GIF"
        final = _decoded(picture, config, name)
    mime, encoded = _encoded(final, drawing)
    return Image(hashlib.sha256(encoded).hexdigest(), mime, final.width, final.height, encoded)


async def prepare(data: bytes, config: VisionConfig, *, name: str = "") -> tuple[Image, float]:
    """The image a user sent, checked and re-encoded, and the seconds that took (/stats).

    ImageRefused (its message fit for the user) for a file over the limits, not a picture,
    damaged, or too slow to decode. The decoding runs in a worker thread: the event loop
    never waits on Pillow.
    """
    if len(data) > config.max_bytes:
        raise ImageRefused(
            f"{_called(name)}is {_size_text(len(data))}; pictures of up to "
            f"{_size_text(config.max_bytes)} are accepted"
        )
    start = time.perf_counter()
    try:
        image = await asyncio.wait_for(
            asyncio.to_thread(_prepare, data, config, name), DECODE_TIMEOUT
        )
    except MemoryError:
        raise ImageRefused(
            f"{_called(name)}is too large to decode on this machine; send a smaller picture "
            f"(at most {config.max_side:,} pixels a side is kept anyway)"
        ) from None
    except TimeoutError:
        raise ImageRefused(
            f"{_called(name)}took more than {DECODE_TIMEOUT:.0f} s to decode; send a smaller "
            f"or simpler {_ACCEPTED_TEXT}"
        ) from None
    return image, time.perf_counter() - start
