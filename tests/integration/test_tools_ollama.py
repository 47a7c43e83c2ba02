"""Tool calls through the Ollama backend, against the Ollama emulator: the `tools` capability
from /api/show, calls in Ollama's shape, a model or server that refuses tools, and a reply
that breaks or hangs after its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from botkit.backends.base import BackendError, Chunk, GenerationParams, Message
from botkit.backends.ollama import OllamaBackend
from botkit.config.backends import OllamaConfig
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec
from tests.emulators.ollama import EmulatedModel, OllamaEmulator, OllamaToolReply

PARAMS = GenerationParams(temperature=0.0, max_tokens=64, seed=1)
WEATHER = ToolSpec("weather", "The weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})  # fmt: skip
CLOCK = ToolSpec("clock", "The time now.")
ASK: list[Message] = [{"role": "user", "content": "Weather in Paris, and the time?"}]
CALLS = [{"function": {"name": "weather", "arguments": {"city": "Paris"}}},
         {"function": {"name": "clock", "arguments": {}}}]  # fmt: skip


@pytest.fixture
async def ollama() -> AsyncIterator[OllamaEmulator]:
    emulator = OllamaEmulator(models=[
        EmulatedModel("qwen2.5:0.5b", capabilities=("completion", "tools")),
        EmulatedModel("gemma3:270m"),
        EmulatedModel("old:1b", lists_capabilities=False),
    ])  # fmt: skip
    await emulator.start()
    yield emulator
    await emulator.stop()


async def backend_for(ollama: OllamaEmulator, model: str, **extra: Any) -> OllamaBackend:
    backend = OllamaBackend("big", OllamaConfig(kind="ollama", host=ollama.url, model=model,
                                                num_ctx=4096, **extra))  # fmt: skip
    await backend.start()
    return backend


async def reply(
    backend: OllamaBackend, messages: Sequence[Message] = ASK,
    tools: Sequence[ToolSpec] = (WEATHER, CLOCK), choice: ToolChoice = "auto",
) -> list[Chunk]:  # fmt: skip
    return [c async for c in backend.stream(messages, PARAMS, cache_key="t", tools=tools,
                                            tool_choice=choice)]  # fmt: skip


async def test_a_model_with_tools_calls_them(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "qwen2.5:0.5b")
    try:
        assert await backend.tool_support() is None
        ollama.tool_replies.append(OllamaToolReply(calls=CALLS, text="Looking."))
        chunks = await reply(backend)
        assert "".join(c.text for c in chunks) == "Looking."
        assert chunks[-1].tool_calls == (ToolCall("call_0", "weather", '{"city": "Paris"}'),
                                         ToolCall("call_1", "clock", "{}"))  # fmt: skip
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.stop_reason == "tool_calls"
        assert ollama.records[-1].body["tools"] == [WEATHER.to_openai(), CLOCK.to_openai()]
        # No tool_choice in Ollama: a forced tool is the only one sent, "none" sends none.
        ollama.tool_replies.append(OllamaToolReply(calls=CALLS[1:]))
        await reply(backend, choice="clock")
        assert ollama.records[-1].body["tools"] == [CLOCK.to_openai()]
        ollama.tool_replies.append(OllamaToolReply(text="No tools."))
        await reply(backend, choice="none")
        assert not ollama.records[-1].body["tools"]  # the client always sends the list
    finally:
        await backend.close()


async def test_a_model_without_the_capability_gets_no_tools(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "gemma3:270m")
    try:
        reason = await backend.tool_support()
        assert reason == "this Ollama model has no `tools` capability (gemma3:270m)"
        ollama.tool_replies.append(OllamaToolReply(text="Plain words."))
        assert "".join(c.text for c in await reply(backend)) == "Plain words."
        assert not ollama.records[-1].body["tools"]  # the client always sends the list
    finally:
        await backend.close()


async def test_a_server_without_capabilities_that_refuses_tools_is_asked_again(
    ollama: OllamaEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await backend_for(ollama, "old:1b")
    try:
        assert await backend.tool_support() is None  # it lists no capabilities: tools are tried
        ollama.tool_replies.append(OllamaToolReply(text="Plain words."))
        assert "".join(c.text for c in await reply(backend)) == "Plain words."
        assert [bool(r.body["tools"]) for r in ollama.records] == [True, False]
        reason = await backend.tool_support()
        assert reason is not None
        assert "registry.ollama.ai/library/old:1b does not support tools" in reason
        assert "asked again without tools" in caplog.text
    finally:
        await backend.close()


async def test_a_tool_turn_is_sent_in_ollamas_shape(ollama: OllamaEmulator) -> None:
    turn: list[Message] = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_1", "type": "function",
             "function": {"name": "clock", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "call_0", "name": "weather", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_1", "name": "clock", "content": "bad arguments"},
    ]  # fmt: skip
    backend = await backend_for(ollama, "qwen2.5:0.5b")
    try:
        ollama.tool_replies.append(OllamaToolReply(text="Sunny, and noon."))
        assert "".join(c.text for c in await reply(backend, turn)) == "Sunny, and noon."
        assert ollama.records[-1].body["messages"] == [
            {"role": "user", "content": "Weather in Paris, and the time?"},
            {"role": "assistant", "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "clock", "arguments": {"_raw": "not json"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "weather"},
            {"role": "tool", "content": "bad arguments", "tool_name": "clock"},
        ]  # fmt: skip
        plain: Message = {"role": "assistant", "content": ""}
        assert await backend.message_tokens(turn[1]) > await backend.message_tokens(plain) + 10
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("script", "said"),
    [
        (OllamaToolReply(calls=[{"function": {"name": "clock", "arguments": "{}"}}]),
         "answered something that is not its API (ValidationError"),
        (OllamaToolReply(calls=[{"function": {"arguments": {}}}]),
         "answered something that is not its API (ValidationError"),
        (OllamaToolReply(calls=CALLS, ending="cut"),
         "the connection to Ollama at {url} failed: RemoteProtocolError"),
    ],
)  # fmt: skip
async def test_a_broken_tool_reply_is_a_clear_error_and_the_next_works(
    ollama: OllamaEmulator, script: OllamaToolReply, said: str
) -> None:
    backend = await backend_for(ollama, "qwen2.5:0.5b")
    try:
        ollama.tool_replies.append(script)
        with pytest.raises(BackendError) as caught:
            await reply(backend)
        assert said.format(url=ollama.url) in str(caught.value)
        ollama.tool_replies.append(OllamaToolReply(calls=CALLS[1:]))
        assert (await reply(backend))[-1].tool_calls == (ToolCall("call_0", "clock", "{}"),)
    finally:
        await backend.close()


async def test_a_reply_that_hangs_after_its_calls_times_out(ollama: OllamaEmulator) -> None:
    backend = await backend_for(ollama, "qwen2.5:0.5b", read_timeout=0.5)
    try:
        ollama.tool_replies.append(OllamaToolReply(calls=CALLS, ending="hang"))
        with pytest.raises(BackendError, match=r"did not answer in time \(5 s to connect, 0.5 s"):
            await reply(backend)
    finally:
        await backend.close()
