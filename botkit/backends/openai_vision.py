"""Images on an OpenAI-compatible server: the wire shape, whether the model can see, and what an
image costs.

Wire (OpenAI's API reference, chat/create, user message content parts): a user message with
pictures has `content: [{"type": "text", "text": ...}, {"type": "image_url", "image_url":
{"url": "data:image/png;base64,..."}}, ...]`; the text stays in its own part, the image bytes
only in the data URI.

Whether it can see, with `vision = "auto"` (the default):
- llama.cpp's llama-server says in GET /props: `modalities: {"vision": bool, "audio": bool}`
  (tools/server/server-context.cpp, the props handler: `oai_parser_opt.allow_image`, true when
  it was started with --mmproj).
- Other servers say nothing (OpenAI's API, vLLM, llama_cpp.server): the model is taken as
  blind until the config says `vision = true`. Trying it would not be safe: llama_cpp.server
  with a text-only chat format renders a content list into the prompt as text, base64 and all.
- A server that refuses a request with an image (llama-server without --mmproj: 500 "image
  input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
  tools/server/server-common.cpp `oaicompat_chat_params_parse`; OpenAI: 400 "Invalid content
  type. image_url is only supported by certain models.") is remembered: vision_support() then
  gives its words, and the chat is told at once.

What an image costs: llama-server counts it in `usage.prompt_tokens`; the first reply to a
request with images teaches the figure (image_cost.ImageCost). Until then, OpenAI's published
tile formula (image_cost.openai_tile_tokens), which errs high for the small projectors of local
models (SmolVLM: 64, Gemma 3: 256).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from botkit.backends.base import Message
from botkit.backends.image_cost import ImageCost, image_count, openai_tile_tokens
from botkit.backends.openai_errors import error_message
from botkit.config import OpenAIConfig

__all__ = ["ServerVision", "wire_messages"]

# Words of a refusal that is about the image (read only from a refusal of a request carrying
# one): llama-server's "image input is not supported", OpenAI's "image_url is only supported by
# certain models", vLLM's "... is not a multimodal model".
_IMAGE_WORDS = re.compile(r"image|vision|multimodal|mmproj", re.IGNORECASE)


def _wire(message: Message) -> dict[str, Any]:
    wired: dict[str, Any] = {k: v for k, v in message.items() if k != "images"}
    images = message.get("images")
    if images:
        wired["content"] = [
            {"type": "text", "text": message["content"]},
            *({"type": "image_url", "image_url": {"url": i.data_uri}} for i in images),
        ]
    return wired


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The messages as the API takes them (images as content parts)."""
    return [_wire(m) for m in messages]


class ServerVision:
    """Whether the server's model can see, and what its images cost."""

    def __init__(self, name: str, config: OpenAIConfig, where: str) -> None:
        self._name = name
        self._config = config
        self._where = where
        self._props: bool | None = None  # /props modalities.vision, once asked
        self._asked = False
        self.refused: str | None = None  # the server refused a request with an image
        self.cost = ImageCost(openai_tile_tokens, "OpenAI's tile formula (85 + 170 per tile)")

    async def ask(self, client: AsyncOpenAI, root: str) -> None:
        """Read llama-server's /props modalities once (only with vision = "auto")."""
        if self._asked or self._config.vision != "auto":
            return
        try:
            props = await client.get(f"{root}/props", cast_to=object)
        except (openai.APIError, httpx.TransportError):
            return  # not llama-server, or not now: asked again next time
        self._asked = True
        modalities = props.get("modalities") if isinstance(props, dict) else None
        vision = modalities.get("vision") if isinstance(modalities, dict) else None
        self._props = vision if isinstance(vision, bool) else None

    def reason(self) -> str | None:
        """None when images may be sent; otherwise why not."""
        if self.refused is not None:
            return self.refused
        if self._config.vision is True:
            return None
        if self._config.vision is False:
            return f"vision = false in the config of backend {self._name}"
        if self._props is True:
            return None
        if self._props is False:
            return (
                f"{self._where} says its model cannot see images (GET /props: "
                "modalities.vision is false; llama-server needs --mmproj for that)"
            )
        return (
            f"cannot tell whether {self._config.model} can see images: {self._where} does not "
            f"say (llama-server's /props does); set vision = true for backend {self._name} if "
            "it can"
        )

    def refusal(self, exc: openai.APIStatusError) -> bool:
        """Remember a refusal of a request with images that is about the images (True)."""
        detail = error_message(exc)
        about_images = exc.status_code in (400, 415, 422) or (
            exc.status_code == 500 and "image input is not supported" in detail
        )
        if not (about_images and _IMAGE_WORDS.search(detail)):
            return False
        self.refused = f"{self._where} refused an image ({exc.status_code}: {detail})"
        return True

    def images_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of every image these messages carry."""
        return sum(self.cost.tokens(i) for m in messages for i in m.get("images") or ())

    def text_part(self, messages: Sequence[Message], reported: int, text: int) -> int | None:
        """Learn an image's cost from a prompt the server counted as `reported` tokens and
        botkit as `text` without its images; the text's part of `reported`, or None when the
        images' part is not known."""
        images = image_count(messages)
        if not images:
            return reported
        self.cost.observe(images, reported, text)
        learned = self.cost.learned
        return None if learned is None else reported - images * learned

    def describe(self) -> str:
        """Whether the model can see, for /model."""
        return self.reason() or "yes"
