"""Images through the OpenAI-compatible backend, against the OpenAI emulator: the exact
`image_url` content parts, vision support from llama-server's /props or the config, an
image's tokens learnt from usage.prompt_tokens, a text-only server's refusal (remembered), and
a server that fails or hangs in the middle of a request with an image."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from botkit.backends.base import (
    BackendBusy,
    BackendError,
    BackendUnavailable,
    GenerationParams,
    Message,
)
from botkit.backends.openai_api import OpenAIBackend
from botkit.config.backends import OpenAIConfig
from tests.emulators.openai import OpenAIEmulator
from tests.pictures import picture

PARAMS = GenerationParams(temperature=0.0, max_tokens=8, seed=1)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIEmulator]:
    emulator = OpenAIEmulator(props_n_ctx=4096, props_vision=True, vision=True)
    await emulator.start()
    yield emulator
    await emulator.stop()


async def backend_for(server: OpenAIEmulator, **extra: Any) -> OpenAIBackend:
    config = OpenAIConfig(kind="openai", base_url=server.base_url, model="smollm2",
                          max_retries=0, **extra)  # fmt: skip
    backend = OpenAIBackend("eyes", config)
    await backend.start()
    return backend


def asking(*images: Any) -> list[Message]:
    return [
        {"role": "system", "content": "You describe pictures."},
        {"role": "user", "content": "What is in this picture?", "images": list(images)},
    ]


async def test_an_image_reaches_the_server_as_a_data_uri_part(server: OpenAIEmulator) -> None:
    red, blue = picture(), picture(colour=(20, 20, 220), mime="image/jpeg")
    backend = await backend_for(server)
    try:
        assert await backend.vision_support() is None  # /props: modalities.vision true
        chunks = [c async for c in backend.stream(asking(red, blue), PARAMS, cache_key="c")]
        assert "".join(c.text for c in chunks) == "What is in this picture?"
        assert server.records[-1]["messages"] == [
            {"role": "system", "content": "You describe pictures."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": red.data_uri}},
                {"type": "image_url", "image_url": {"url": blue.data_uri}}]},
        ]  # fmt: skip
        assert red.data_uri.startswith("data:image/png;base64,")
        assert blue.data_uri.startswith("data:image/jpeg;base64,")
    finally:
        await backend.close()


async def test_an_images_cost_is_learnt_from_usage(server: OpenAIEmulator) -> None:
    server.image_tokens = 576
    backend = await backend_for(server)
    image = picture()
    try:
        assert await backend.image_tokens(image) == 85 + 170  # OpenAI's formula: one tile
        [c async for c in backend.stream(asking(image), PARAMS, cache_key="c")]
        learnt = await backend.image_tokens(image)
        assert 540 <= learnt <= 576  # the text's estimate errs high: a little less
        assert "learnt" in (await backend.info()).extra["image tokens"]
    finally:
        await backend.close()


async def test_props_that_say_no_vision_keep_images_away(server: OpenAIEmulator) -> None:
    server.props_vision, server.vision = False, False
    backend = await backend_for(server)
    try:
        reason = await backend.vision_support()
        assert reason is not None
        assert "modalities.vision is false" in reason
        with pytest.raises(BackendError, match="images cannot be sent to this model"):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        assert server.records == []
    finally:
        await backend.close()


async def test_a_server_that_does_not_say_is_blind_unless_the_config_says(
    server: OpenAIEmulator,
) -> None:
    server.props_n_ctx = server.props_vision = None  # OpenAI's API, vLLM: no /props
    backend = await backend_for(server)
    trusted = await backend_for(server, vision=True)
    try:
        reason = await backend.vision_support()
        assert reason is not None
        assert reason.startswith("cannot tell whether smollm2 can see images")
        assert await trusted.vision_support() is None
        [c async for c in trusted.stream(asking(picture()), PARAMS, cache_key="c")]
        assert server.records[-1]["messages"][1]["content"][1]["type"] == "image_url"
    finally:
        await backend.close()
        await trusted.close()


@pytest.mark.parametrize(
    ("wording", "said"),
    [("llama-server", "500: image input is not supported - hint"),
     ("openai", "400: Invalid content type. image_url is only supported by certain models")],
)  # fmt: skip
async def test_a_refusal_of_an_image_is_remembered(
    server: OpenAIEmulator, wording: Any, said: str
) -> None:
    server.props_n_ctx = server.props_vision = None
    server.vision, server.vision_refusal = False, wording
    backend = await backend_for(server, vision=True)  # the config was wrong
    try:
        with pytest.raises(BackendError, match="images cannot be sent to this model") as caught:
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        assert said in str(caught.value)
        reason = await backend.vision_support()
        assert reason is not None
        assert said in reason
        text: list[Message] = [{"role": "user", "content": "Hello there"}]
        chunks = [c async for c in backend.stream(text, PARAMS, cache_key="c")]
        assert "".join(c.text for c in chunks) == "Hello there"  # the chat goes on
    finally:
        await backend.close()


async def test_a_busy_or_broken_server_mid_image_is_a_plain_error(server: OpenAIEmulator) -> None:
    backend = await backend_for(server)
    try:
        server.busy, server.busy_status = 1, 503
        with pytest.raises(BackendBusy):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        server.cut_after = 1
        with pytest.raises(BackendUnavailable, match="failed: RemoteProtocolError"):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        server.cut_after = None
        assert await backend.vision_support() is None  # neither was a refusal of the image
        chunks = [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
        assert chunks[-1].usage is not None
    finally:
        await backend.close()


async def test_a_server_that_hangs_on_an_image_times_out(server: OpenAIEmulator) -> None:
    backend = await backend_for(server, read_timeout=0.5)
    try:
        await backend.vision_support()
        server.stall = True
        with pytest.raises(BackendUnavailable, match="did not answer in time"):
            [c async for c in backend.stream(asking(picture()), PARAMS, cache_key="c")]
    finally:
        await backend.close()
