"""Images through the Ollama backend, against the Ollama emulator: the exact `images` shape,
vision support from /api/show's capabilities, an image's tokens learnt from prompt_eval_count,
a model that cannot see (Ollama would drop the images silently: botkit never sends them), and
a server that breaks or hangs in the middle of a request with an image."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from botkit.backends.base import BackendError, BackendUnavailable, GenerationParams, Message
from botkit.backends.ollama import OllamaBackend
from botkit.compose import build_bot
from botkit.config.backends import OllamaConfig
from botkit.images.decode import prepare
from tests.conftest import MakeConfig, say
from tests.emulators.ollama import EmulatedModel, OllamaEmulator
from tests.pictures import picture
from tests.unit.images.test_picture_turns import send_picture

PARAMS = GenerationParams(temperature=0.0, max_tokens=8, seed=1)
GEMMA_INFO = (("<arch>.mm.tokens_per_image", 256), ("<arch>.vision.image_size", 896),
              ("<arch>.vision.patch_size", 14))  # fmt: skip


@pytest.fixture
async def ollama() -> AsyncIterator[OllamaEmulator]:
    emulator = OllamaEmulator(models=[
        EmulatedModel("gemma3:4b", family="gemma3", capabilities=("completion", "vision"),
                      image_tokens=256, vision_info=GEMMA_INFO),
        # moondream's SigLIP encoder: 27 × 27 patches an image
        EmulatedModel("moondream:1.8b", capabilities=("completion", "vision"), image_tokens=729),
        EmulatedModel("smollm2:135m"),
        EmulatedModel("old:1b", lists_capabilities=False),
    ])  # fmt: skip
    await emulator.start()
    yield emulator
    await emulator.stop()


async def backend_for(ollama: OllamaEmulator, model: str, **extra: Any) -> OllamaBackend:
    backend = OllamaBackend("eyes", OllamaConfig(kind="ollama", host=ollama.url, model=model,
                                                 num_ctx=2048, **extra))  # fmt: skip
    await backend.start()
    return backend


def asking(*images: Any) -> list[Message]:
    return [
        {"role": "system", "content": "You describe pictures."},
        {"role": "user", "content": "What is in this picture?", "images": list(images)},
    ]


async def test_an_image_reaches_a_vision_model_as_base64_on_its_message(
    ollama: OllamaEmulator,
) -> None:
    red, blue = picture(), picture(colour=(20, 20, 220), mime="image/jpeg")
    backend = await backend_for(ollama, "gemma3:4b")
    try:
        assert await backend.vision_support() is None
        assert await backend.image_tokens(red) == 256  # gemma3.mm.tokens_per_image
        chunks = [c async for c in backend.stream(asking(red, blue), PARAMS, cache_key="c")]
        assert chunks[-1].usage is not None
        sent = ollama.records[-1].body["messages"]
        assert sent == [
            {"role": "system", "content": "You describe pictures."},
            {"role": "user", "content": "What is in this picture?",
             "images": [red.base64, blue.base64]},
        ]  # fmt: skip
        assert ollama.records[-1].images == 2
        info = await backend.info()
        assert info.extra["vision"] == "yes"
    finally:
        await backend.close()


async def test_an_images_cost_is_learnt_from_prompt_eval_count(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "moondream:1.8b")
    image = picture()
    try:
        assert await backend.image_tokens(image) == 768  # nothing in model_info: Ollama's own
        assert "768 per image" in (await backend.info()).extra["image tokens"]
        [c async for c in backend.stream(asking(image), PARAMS, cache_key="c")]
        learnt = await backend.image_tokens(image)
        # The emulated image costs 729; the text's estimate errs high, so a little less.
        assert 700 <= learnt <= 729
        assert "learnt from the server's prompt counts" in (await backend.info()).extra[
            "image tokens"]  # fmt: skip
    finally:
        await backend.close()


async def test_a_model_without_vision_is_never_sent_an_image(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "smollm2:135m")
    try:
        reason = await backend.vision_support()
        assert reason == "this Ollama model has no `vision` capability (smollm2:135m)"
        with pytest.raises(BackendError, match="images cannot be sent to this model: this "
                           "Ollama model has no `vision` capability"):  # fmt: skip
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        assert ollama.records == []  # Ollama would have dropped it without a word
        # The chat goes on without images.
        text: list[Message] = [{"role": "user", "content": "Hello"}]
        chunks = [c async for c in backend.stream(text, PARAMS, cache_key="c")]
        assert chunks[-1].usage is not None
        assert (await backend.info()).extra["vision"] == reason
    finally:
        await backend.close()


async def test_a_server_without_capabilities_cannot_tell_unless_the_config_says(
    ollama: OllamaEmulator,
) -> None:
    backend = await backend_for(ollama, "old:1b")
    trusted = await backend_for(ollama, "old:1b", vision=True)
    try:
        reason = await backend.vision_support()
        assert reason is not None
        assert reason.startswith("cannot tell whether old:1b can see images")
        assert "set vision = true for backend eyes" in reason
        assert await trusted.vision_support() is None
        [c async for c in trusted.stream(asking(picture()), PARAMS, cache_key="c")]
        assert ollama.records[-1].body["messages"][1]["images"] == [picture().base64]
    finally:
        await backend.close()
        await trusted.close()


async def test_a_reply_broken_off_after_an_image_is_a_clear_error(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "moondream:1.8b")
    try:
        ollama.cut_after = 1
        with pytest.raises(BackendUnavailable, match=r"ended before it was finished|failed"):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        ollama.cut_after = None
        chunks = [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        assert chunks[-1].usage is not None  # the next turn works
    finally:
        await backend.close()


async def test_a_server_that_hangs_on_an_image_times_out(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "moondream:1.8b", read_timeout=0.5)
    try:
        await backend.vision_support()
        ollama.stall = True
        with pytest.raises(BackendUnavailable, match="did not answer in time"):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
    finally:
        await backend.close()


async def test_through_the_bot_a_blind_chat_model_gets_the_seeing_models_description(
    ollama: OllamaEmulator, make_config: MakeConfig
) -> None:
    """The whole path on Ollama: a chat on a text-only model sends a picture; the configured
    vision model describes it (its request carries the picture), the chat model gets the words
    (its request carries none); then /model NAME to the vision model sends the picture itself."""
    backends = {
        "chat": {"kind": "ollama", "host": ollama.url, "model": "smollm2:135m", "num_ctx": 2048},
        "eyes": {"kind": "ollama", "host": ollama.url, "model": "gemma3:4b", "num_ctx": 2048},
    }
    config = make_config(backends=backends, defaults={"backend": "chat"},
                         vision={"backend": "eyes"})  # fmt: skip
    async with build_bot(config) as bot:
        photo, _ = await prepare(picture(side=32).data, bot.config.vision)  # as botkit sends it
        first = await send_picture(bot, "What is it?", picture(side=32).data)
        assert "eyes described the picture" in first.messages[0]
        described, answered = ollama.records[-2], ollama.records[-1]
        assert described.body["model"] == "gemma3:4b"
        assert described.body["messages"][-1]["images"] == [photo.base64]
        assert answered.body["model"] == "smollm2:135m"
        question = answered.body["messages"][-1]
        assert "images" not in question
        assert question["content"].startswith("What is it?\n\n[Picture 1, described by eyes")
        assert photo.base64 not in str(answered.body)  # never the picture as text
        await say(bot, "/model eyes")
        await send_picture(bot, "And now?", picture(side=32).data)
        seen = ollama.records[-1].body
        assert seen["model"] == "gemma3:4b"
        assert seen["messages"][-1]["images"] == [photo.base64]
