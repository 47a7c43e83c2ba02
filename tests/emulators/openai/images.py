"""Images for the OpenAI emulator: content parts as OpenAI's API reference defines them
(chat/create: a user message's `content` is a string or an array of parts, `{"type": "text",
"text"}` and `{"type": "image_url", "image_url": {"url", "detail"?}}`, detail one of "auto",
"low", "high"; other roles take text parts only), and a model that cannot see.

- The url here must be a data URI of a picture in a MIME type the API takes (png, jpeg, gif,
  webp: platform.openai.com/docs/guides/images-vision, "Image input requirements") whose bytes
  decode as that picture; botkit sends nothing else, so an http URL is refused too.
- A text-only server refuses a request with an image part, in one of two servers' words:
  "llama-server": 500 {"error": {"code": 500, "message": "image input is not supported - hint:
  if this is unexpected, you may need to provide the mmproj", "type": "server_error"}}
  (ggml-org/llama.cpp tools/server/server-common.cpp `oaicompat_chat_params_parse`, a
  std::runtime_error, which the server answers 500); "openai": 400 "Invalid content type.
  image_url is only supported by certain models." (invalid_request_error).
- An image costs `image_tokens` prompt tokens (a fixed-size projector, as llama-server's).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from PIL import Image, UnidentifiedImageError

__all__ = ["LLAMA_SERVER_NO_IMAGES", "content_text", "image_parts", "parts_problem"]

LLAMA_SERVER_NO_IMAGES = ("image input is not supported - hint: if this is unexpected, you may "
                          "need to provide the mmproj")  # fmt: skip
_DATA_URI = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,(.*)", re.DOTALL)
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


def content_text(content: Any) -> str:
    """The words of a message's content: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if p.get("type") == "text")


def image_parts(messages: list[dict[str, Any]]) -> int:
    """How many image parts the messages carry."""
    return sum(1 for m in messages if isinstance(m["content"], list)
               for p in m["content"] if p.get("type") == "image_url")  # fmt: skip


def _image_problem(where: str, part: dict[str, Any]) -> str | None:
    image_url = part.get("image_url")
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        return f"Missing required parameter: '{where}.image_url.url'."
    if set(image_url) - {"url", "detail"}:
        extra = sorted(set(image_url) - {"url", "detail"})[0]
        return f"Unrecognized request argument supplied: {where}.image_url.{extra}"
    if image_url.get("detail", "auto") not in ("auto", "low", "high"):
        return (
            f"Invalid value: '{image_url['detail']}'. Supported values are: 'auto', 'low', 'high'."
        )
    found = _DATA_URI.fullmatch(image_url["url"])
    if found is None:
        return (f"Invalid '{where}.image_url.url'. Expected a base64-encoded data URL with an "
                "image MIME type (png, jpeg, gif or webp).")  # fmt: skip
    try:
        with Image.open(io.BytesIO(base64.b64decode(found[2], validate=True))) as picture:
            if picture.format != _FORMATS[found[1]]:
                raise UnidentifiedImageError(picture.format)
    except (binascii.Error, UnidentifiedImageError, OSError):
        return "You uploaded an unsupported image. Please make sure your image is valid."
    return None


def parts_problem(index: int, message: dict[str, Any]) -> str | None:
    """What is wrong with a message whose content is a list of parts, or None."""
    parts = message["content"]
    if not parts:
        return f"Invalid 'messages[{index}].content': empty array."
    for j, part in enumerate(parts):
        where = f"messages[{index}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                return f"Missing required parameter: '{where}.text'."
        elif kind == "image_url":
            if message["role"] != "user":
                return (f"Invalid '{where}'. Image URLs are only allowed for messages with role "
                        f"'user', but this message with role '{message['role']}' contains an "
                        "image URL.")  # fmt: skip
            problem = _image_problem(where, part)
            if problem:
                return problem
        else:
            return f"Invalid value: '{kind}'. Supported values are: 'text' and 'image_url'."
    return None
