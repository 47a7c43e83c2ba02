"""Pictures: what botkit's checking and re-encoding costs, and what a picture adds to a turn.

1. A 12-megapixel phone photo (4000 × 3000 JPEG with EXIF) through `images.decode.prepare`
   (size and header checks, decode in a worker thread, EXIF orientation, scale to 1536, JPEG
   without metadata, SHA-256) against the same work written plainly with Pillow on the calling
   thread (open, exif_transpose, thumbnail, save), alternating, in the same run.
2. A turn with that picture (read from an attachment, re-encoded, stored with the message in
   the same transaction, given to a scripted model that sees) against the same turn without
   it, on SQLite: what the picture path adds, in milliseconds.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncGenerator

from PIL import Image as PILImage
from PIL import ImageOps

from bench.common import Result, incoming, median, started_bot
from botkit.adapters.memory import MemoryTarget
from botkit.backends.base import Backend
from botkit.backends.scripted import ScriptedBackend
from botkit.config import VisionConfig
from botkit.core.events import Attachment, Incoming
from botkit.images.decode import prepare

ROUNDS = 7


def _photo() -> bytes:
    """A 4000 × 3000 photo-like JPEG (a gradient with noise) with EXIF."""
    gradient = PILImage.linear_gradient("L").resize((4000, 3000))
    noise = PILImage.effect_noise((4000, 3000), 40)
    photo = PILImage.merge(
        "RGB", (gradient, noise, gradient.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT))
    )
    exif = PILImage.Exif()
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def _plain(data: bytes) -> bytes:
    """The same job without botkit: Pillow's own calls, nothing checked."""
    with PILImage.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    upright.thumbnail((1536, 1536), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    upright.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _attachment(data: bytes) -> Attachment:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield data

    return Attachment("photo.jpg", len(data), "image/jpeg", chunks)


async def run() -> list[Result]:
    """Re-encoding against plain Pillow, and a turn with a picture against one without."""
    data = _photo()
    config = VisionConfig()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await prepare(data, config, name="photo.jpg")
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        _plain(data)
        theirs.append(time.perf_counter() - started)
    backend = ScriptedBackend("local")
    backend.vision_unsupported = None
    objects: dict[str, Backend] = {"local": backend}
    with_picture: list[float] = []
    without: list[float] = []
    async with started_bot(objects) as bot:
        for index in range(ROUNDS + 1):
            for pictured in (True, False):
                plain = incoming("What is this?", f"pic-{index}-{pictured}")
                files = (_attachment(data),) if pictured else ()
                message = Incoming(plain.chat, plain.user, plain.text, attachments=files)
                backend.enqueue("Noted.")
                started = time.perf_counter()
                await bot.router.handle(message, MemoryTarget())
                spent = time.perf_counter() - started
                if index:
                    (with_picture if pictured else without).append(spent)
    added = median(with_picture) - median(without)
    decode = median(ours)
    return [
        Result("picture re-encode, 12 MP photo", decode * 1e3, median(theirs) * 1e3, "ms",
               decode / median(theirs), "≤ 1.5", decode / median(theirs) <= 1.5,
               f"baseline: Pillow's open, exif_transpose, thumbnail, save; {len(data) >> 10} KB"),
        Result("turn with a picture vs without", median(with_picture) * 1e3,
               median(without) * 1e3, "ms", added / decode, "report", True,
               "ratio = the picture's extra time / its re-encoding alone (1: nothing else costs)"),
    ]  # fmt: skip
