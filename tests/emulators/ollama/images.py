"""Images for the Ollama emulator: the shape of a message's `images`, and what a model with or
without the `vision` capability does with them.

Rules, from Ollama's server (v0.12.11):
- `images` on a message is api.Message.Images, `[]ImageData` (a `[]byte` each, api/types.go):
  Go's encoding/json takes each as a base64 string (standard alphabet, padded) and refuses
  anything else before the handler runs: 400 {"error": "<the decoder's error>"}
  (server/routes.go ChatHandler, ShouldBindJSON). The decoder would also take an array of byte
  values; botkit never sends one, and the emulator refuses it.
- A model without the `vision` capability takes the request and drops the images without a
  word: the runner splits `[img-N]` tags out of the prompt only for a multimodal model
  (runner/llamarunner/runner.go and runner/ollamarunner/runner.go, `inputs`). The emulator
  does the same and records it (`ChatRecord.images_dropped`), so a test can prove botkit never
  relies on it.
- A vision model decodes each image (the runner's image processor, Go's image.Decode): bytes
  that are no picture fail the request, 500 {"error": "... image: unknown format"}. Its image
  costs `EmulatedModel.image_tokens` prompt tokens (`prompt_eval_count` counts them).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from PIL import Image, UnidentifiedImageError

__all__ = ["decoded_images", "image_problem"]

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def image_problem(messages: Any) -> str | None:
    """Go's decoder's refusal of a message's images, or None."""
    for message in messages if isinstance(messages, list) else []:
        images = message.get("images") if isinstance(message, dict) else None
        if images is None:
            continue
        if not isinstance(images, list):
            kind = "string" if isinstance(images, str) else type(images).__name__
            return (f"json: cannot unmarshal {kind} into Go struct field "
                    "Message.messages.images of type []api.ImageData")  # fmt: skip
        for image in images:
            if not isinstance(image, str):
                return (f"json: cannot unmarshal {type(image).__name__} into Go struct field "
                        "Message.messages.images of type api.ImageData")  # fmt: skip
            valid = _BASE64.match(image)
            end = valid.end() if valid else 0
            if end < len(image) or len(image) % 4:
                return f"illegal base64 data at input byte {min(end, len(image))}"
    return None


def decoded_images(messages: list[dict[str, Any]]) -> tuple[int, str | None]:
    """How many images the messages carry, and the runner's error for one that is no picture."""
    count = 0
    for message in messages:
        for image in message.get("images") or []:
            count += 1
            try:
                Image.open(io.BytesIO(base64.b64decode(image, validate=True))).verify()
            except (binascii.Error, UnidentifiedImageError, OSError, SyntaxError):
                return count, "failed to process inputs: image: unknown format"
    return count, None
