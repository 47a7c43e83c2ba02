"""Images on the wire, without a server: Ollama's `images` and OpenAI's `image_url` parts in
their exact shapes (no base64 in any text field), the vision reasons, and the image-cost
learner."""

from __future__ import annotations

import base64
import json

from botkit.backends.base import Message
from botkit.backends.image_cost import ImageCost, openai_tile_tokens
from botkit.backends.ollama_tools import ollama_messages
from botkit.backends.ollama_vision import image_estimate, vision_reason
from botkit.backends.openai_vision import wire_messages
from tests.pictures import picture


def _texts(value: object) -> list[str]:
    """Every string in a JSON-like value that is a text field (not an image's own field)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in ("images", "url") for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [value] if isinstance(value, str) else []


def test_ollama_puts_the_bytes_on_the_message_and_nothing_in_its_text() -> None:
    image = picture()
    message: Message = {"role": "user", "content": "What is this?", "images": [image]}
    [wired] = ollama_messages([message])
    assert wired == {"role": "user", "content": "What is this?", "images": [image.data]}
    # The client writes bytes as base64 (ollama._types.Image), the form Ollama decodes.
    assert base64.b64decode(image.base64) == image.data
    assert all(image.base64[:40] not in t for t in _texts(wired))


def test_openai_sends_text_then_one_data_uri_part_per_image() -> None:
    png, jpeg = picture(), picture(mime="image/jpeg")
    messages: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Compare them.", "images": [png, jpeg]},
    ]
    wired = wire_messages(messages)
    assert wired == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Compare them."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png.base64}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg.base64}"}},
        ]},
    ]  # fmt: skip
    json.dumps(wired)  # no Image object left for the client to choke on
    assert all(png.base64[:40] not in t and jpeg.base64[:40] not in t for t in _texts(wired))


def test_a_message_without_images_is_sent_as_before() -> None:
    message: Message = {"role": "user", "content": "Hi"}
    assert wire_messages([message]) == [{"role": "user", "content": "Hi"}]
    assert ollama_messages([message]) == [{"role": "user", "content": "Hi"}]


def test_vision_reasons_come_from_capabilities_and_config() -> None:
    assert vision_reason(["completion", "vision"], "auto", "m", "b") is None
    assert vision_reason(["completion"], "auto", "m", "b") == (
        "this Ollama model has no `vision` capability (m)")  # fmt: skip
    blind = vision_reason(None, "auto", "m", "b")
    assert blind is not None
    assert blind.startswith("cannot tell whether m can see images")
    assert vision_reason(None, True, "m", "b") is None
    assert vision_reason(["vision"], False, "m", "b") == "vision = false in the config of backend b"


def test_ollama_estimates_from_the_projector_details() -> None:
    gemma = {"general.architecture": "gemma3", "gemma3.mm.tokens_per_image": 256,
             "gemma3.vision.image_size": 896, "gemma3.vision.patch_size": 14}  # fmt: skip
    assert image_estimate(gemma)[0] == 256
    clip = {"general.architecture": "x", "x.vision.image_size": 336, "x.vision.patch_size": 14}
    assert image_estimate(clip)[0] == 576
    assert image_estimate({"general.architecture": "llama"})[0] == 768


def test_openai_tile_formula() -> None:
    assert openai_tile_tokens(picture(16)) == 85 + 170
    # 2048 x 1024 -> fits 2048, shortest side to 768: 1536 x 768, 3 x 2 tiles
    wide = picture(16)
    wide = type(wide)(wide.sha256, wide.mime, 2048, 1024, wide.data)
    assert openai_tile_tokens(wide) == 85 + 170 * 6


def test_the_cost_is_learnt_only_when_the_images_dominate() -> None:
    cost = ImageCost(lambda _i: 768, "fixed")
    image = picture()
    assert cost.tokens(image) == 768
    assert not cost.observe(images=1, reported=300, text=200)  # text swamps: nothing learnt
    assert cost.tokens(image) == 768
    assert cost.observe(images=2, reported=600, text=80)
    assert cost.tokens(image) == 260
    assert cost.observe(images=1, reported=300, text=60)  # smaller: the largest is kept
    assert cost.tokens(image) == 260
    assert "260 per image, learnt" in cost.describe()
