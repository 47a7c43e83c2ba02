"""What an image costs in a prompt on a server that cannot count it beforehand (Ollama, an
OpenAI-compatible server): a documented estimate until the server's own prompt count for a
request with images tells the real figure.

Learning: after a reply, the server reports the whole prompt's tokens (Ollama's
`prompt_eval_count`, OpenAI's `usage.prompt_tokens`), images included. What is left after the
text's count, shared among the request's images, is one image's cost. It is only learnt when
the text is at most half of the prompt, so an estimated text count (which errs high) cannot
swamp the images' part; the largest of the recent figures is kept (a model whose images cost
more for larger pictures then errs towards too many tokens, as the text estimate does: an
over-full prompt is truncated or refused, an under-full one only wastes a little window).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

from botkit.backends.base import Message
from botkit.images.spec import Image

__all__ = ["ImageCost", "image_count", "openai_tile_tokens"]


def image_count(messages: Sequence[Message]) -> int:
    """How many images these messages carry."""
    return sum(len(m.get("images") or ()) for m in messages)


def openai_tile_tokens(image: Image) -> int:
    """OpenAI's published cost of an image at detail "high" (the default, "auto", picks it for
    all but tiny pictures): scaled to fit 2048 × 2048, then its shortest side to 768, it costs
    85 tokens plus 170 per 512-pixel tile (platform.openai.com/docs/guides/images-vision,
    "Calculating costs", for the GPT-4o family)."""
    width, height = float(image.width), float(image.height)
    fit = min(1.0, 2048 / max(width, height))
    width, height = width * fit, height * fit
    shrink = min(1.0, 768 / min(width, height))
    width, height = width * shrink, height * shrink
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


class ImageCost:
    """One image's tokens: learnt from the server's counts, else estimate(image)."""

    def __init__(self, estimate: Callable[[Image], int], source: str, window: int = 20) -> None:
        self._estimate = estimate
        self._source = source  # how the estimate is made, for /model
        self._observed: deque[int] = deque(maxlen=window)

    @property
    def learned(self) -> int | None:
        """The cost learnt from the server's counts, if any."""
        return max(self._observed) if self._observed else None

    def tokens(self, image: Image) -> int:
        """Tokens one image costs: the learnt figure, else the estimate."""
        learned = self.learned
        return learned if learned is not None else self._estimate(image)

    def describe(self) -> str:
        """How image tokens are counted, for /model."""
        learned = self.learned
        if learned is not None:
            return f"{learned} per image, learnt from the server's prompt counts"
        return f"estimated: {self._source}"

    def observe(self, images: int, reported: int, text: int) -> bool:
        """Learn from a prompt of `reported` tokens whose text counts `text` and which carried
        `images` images; False when it tells nothing (no image, or too much text)."""
        if images <= 0 or text * 2 > reported:
            return False
        per_image = math.ceil((reported - text) / images)
        if per_image <= 0:
            return False
        self._observed.append(per_image)
        return True
