"""Tool calls through the OpenAI-compatible backend: the emulator streaming calls in fragments
(well-formed, malformed, cut, hung) and refusing tools, and the real llama_cpp.server with
--chat_format chatml-function-calling on the bundled model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from openai import AsyncOpenAI, BadRequestError

from botkit.backends.base import BackendError, Chunk, GenerationParams, Message
from botkit.backends.openai_api import OpenAIBackend
from botkit.config.backends import OpenAIConfig
from botkit.tools.spec import ToolCall, ToolChoice, ToolSpec
from tests.emulators.openai import OpenAIEmulator, ToolReply
from tests.openai_server import RealServer, llama_cpp_server

KEY = "emulated-key"
KEY_ENV = "BOTKIT_TEST_TOOLS_KEY"
PARAMS = GenerationParams(temperature=0.0, max_tokens=64, seed=1)
WEATHER = ToolSpec("weather", "The weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})  # fmt: skip
CLOCK = ToolSpec("clock", "The time now.")
ASK: list[Message] = [{"role": "user", "content": "Weather in Paris, and the time?"}]


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    instance = OpenAIEmulator(api_key=KEY)
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
async def backend(
    emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAIBackend]:
    async with _backend(emulator.base_url, monkeypatch, KEY) as made:
        yield made


class _backend:
    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, key: str, **extra: Any) -> None:
        monkeypatch.setenv(KEY_ENV, key)
        model = extra.pop("model", "smollm2")
        config = OpenAIConfig(kind="openai", base_url=url, model=model, api_key_env=KEY_ENV,
                              n_ctx=2048, **extra)  # fmt: skip
        self.backend = OpenAIBackend("remote", config)

    async def __aenter__(self) -> OpenAIBackend:
        await self.backend.start()
        return self.backend

    async def __aexit__(self, *_: object) -> None:
        await self.backend.close()


async def reply(
    backend: OpenAIBackend, messages: Sequence[Message] = ASK,
    tools: Sequence[ToolSpec] = (WEATHER, CLOCK), choice: ToolChoice = "auto",
) -> list[Chunk]:  # fmt: skip
    return [c async for c in backend.stream(messages, PARAMS, cache_key="t", tools=tools,
                                            tool_choice=choice)]  # fmt: skip


async def test_two_calls_streamed_in_fragments_end_the_reply_whole(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    emulator.tool_replies.append(ToolReply(
        calls=[("call_w", "weather", '{"city": "Paris"}'), (None, "clock", "{}")],
        text="Let me look.", piece=3, interleave=True,
    ))  # fmt: skip
    chunks = await reply(backend)
    assert "".join(c.text for c in chunks) == "Let me look."
    last = chunks[-1]
    assert last.tool_calls == (ToolCall("call_w", "weather", '{"city": "Paris"}'),
                               ToolCall("call_1", "clock", "{}"))  # fmt: skip
    assert last.usage is not None
    assert last.usage.stop_reason == "tool_calls"
    assert all(not c.tool_calls for c in chunks[:-1])
    sent = emulator.tool_records[-1]
    assert sent["tools"] == [WEATHER.to_openai(), CLOCK.to_openai()]
    assert sent["tool_choice"] == "auto"
    assert await backend.tool_support() is None


async def test_a_forced_tool_and_none_reach_the_server_as_the_api_says(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    emulator.tool_replies.append(ToolReply(calls=[("c", "clock", "{}")]))
    (*_, last) = await reply(backend, choice="clock")
    assert last.tool_calls == (ToolCall("c", "clock", "{}"),)
    assert emulator.records[-1]["tool_choice"] == {"type": "function",
                                                   "function": {"name": "clock"}}  # fmt: skip
    chunks = await reply(backend, choice="none")
    assert "tools" not in emulator.records[-1]
    assert "tool_choice" not in emulator.records[-1]
    assert not chunks[-1].tool_calls
    assert emulator.tool_replies == []


@pytest.mark.parametrize(
    ("script", "said"),
    [
        (ToolReply(raw=[{"id": "c", "function": {"name": "clock", "arguments": "{}"}}]),
         "sent a broken tool call: a fragment without a valid `index` (None)"),
        (ToolReply(raw=[{"index": 0, "id": "c", "function": {"arguments": "{}"}}]),
         "sent a broken tool call: call 0 has no function name"),
        (ToolReply(raw=[{"index": 0, "id": "c", "function": {"name": "clock", "arguments": 7}}]),
         "sent a broken tool call: call 0's arguments came as a int"),
        (ToolReply(calls=[("c", "weather", '{"city": "' + "x" * 70_000 + '"}')], piece=4096),
         "sent a broken tool call: call 0's arguments ran past 64 KiB (weather)"),
        (ToolReply(calls=[("c", "weather", '{"city": "Pa')], ending="silent"),
         "ended before it was finished (in the middle of a tool call)"),
        (ToolReply(raw=[], text=""), "said the model called tools but sent no call"),
    ],
)  # fmt: skip
async def test_a_malformed_tool_stream_is_a_clear_error_and_the_next_reply_works(
    emulator: OpenAIEmulator, backend: OpenAIBackend, script: ToolReply, said: str
) -> None:
    emulator.tool_replies.append(script)
    with pytest.raises(BackendError) as caught:
        await reply(backend)
    assert f"the model server at {emulator.base_url} {said}" in str(caught.value)
    assert (
        "".join(c.text for c in await reply(backend, tools=())) == "Weather in Paris, and the time?"
    )


async def test_arguments_that_are_not_json_reach_the_core_as_the_model_wrote_them(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    emulator.tool_replies.append(ToolReply(calls=[("c", "weather", '{"city": Paris}')]))
    (*_, last) = await reply(backend)
    assert last.tool_calls == (ToolCall("c", "weather", '{"city": Paris}'),)


async def test_a_stream_that_dies_mid_arguments_is_an_error(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    emulator.tool_replies.append(
        ToolReply(calls=[("c", "weather", '{"city": "Paris"}')], piece=2, ending="cut", after=3)
    )
    with pytest.raises(BackendError, match=r"failed: RemoteProtocolError \(in the middle of a "
                                           r"tool call\)"):  # fmt: skip
        await reply(backend)


async def test_a_stream_that_hangs_mid_arguments_times_out(
    emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.tool_replies.append(
        ToolReply(calls=[("c", "weather", '{"city": "Paris"}')], piece=2, ending="hang", after=3)
    )
    async with _backend(emulator.base_url, monkeypatch, KEY, read_timeout=0.5) as backend:
        with pytest.raises(BackendError, match=r"sent no part of the reply for 0.5 s"):
            await reply(backend)


@pytest.mark.parametrize(
    ("refusal", "said"),
    [("unrecognized", "Unrecognized request argument supplied: tools"),
     ("jinja", "tools param requires --jinja flag")],
)  # fmt: skip
async def test_a_server_that_refuses_tools_is_asked_again_without_them(
    emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    refusal: str, said: str,
) -> None:  # fmt: skip
    if refusal == "jinja":
        emulator.tools_refusal = "jinja"
    else:
        emulator.unknown = frozenset({"tools"})
    async with _backend(emulator.base_url, monkeypatch, KEY, max_retries=0) as backend:
        assert await backend.tool_support() is None
        chunks = await reply(backend)
        assert "".join(c.text for c in chunks) == "Weather in Paris, and the time?"
        assert "tools" not in emulator.records[-1]
        reason = await backend.tool_support()
        assert reason is not None
        assert said in reason
        assert reason.startswith("the server refused `tools`")
        assert "asked again without them" in caplog.text
        await reply(backend)  # not refused again: tools are no longer sent
        # (llama-server's refusal comes after the emulator recorded the request.)
        assert ["tools" in r for r in emulator.records] == [refusal == "jinja", False, False][
            refusal != "jinja" :
        ]


TURN: list[Message] = [
    *ASK,
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_w", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_c", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_w", "name": "weather", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_c", "name": "clock", "content": "12:00"},
]  # fmt: skip


async def test_a_tool_turn_goes_back_in_the_apis_shape(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    chunks = await reply(backend, TURN)  # the emulator checks every call has its result
    assert "".join(c.text for c in chunks) == "12:00"
    assert emulator.records[-1]["messages"] == [dict(m) for m in TURN]
    assert await backend.message_tokens(TURN[1]) > await backend.message_tokens(
        {"role": "assistant", "content": ""}) + 10  # fmt: skip


async def test_a_result_without_its_call_is_refused_not_taken_for_no_tools(
    emulator: OpenAIEmulator, backend: OpenAIBackend
) -> None:
    with pytest.raises(BackendError, match="must be a response to a preceeding message"):
        await reply(backend, [TURN[0], TURN[2]])
    assert await backend.tool_support() is None


async def test_the_emulator_is_as_strict_as_the_api(emulator: OpenAIEmulator) -> None:
    client = AsyncOpenAI(base_url=emulator.base_url, api_key=KEY, max_retries=0)
    bad_name = {"type": "function", "function": {"name": "what time", "parameters": {}}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [bad_name]}, "string does not match pattern"),
        ({"tools": [CLOCK.to_openai()],
          "tool_choice": {"type": "function", "function": {"name": "weather"}}},
         "function 'weather' is not among 'tools'"),
        ({"tool_choice": "auto"}, "'tool_choice' is only allowed when 'tools' are specified"),
        ({"messages": [TURN[0], TURN[1], TURN[2], ASK[0]]},
         "The following tool_call_ids did not have response messages: call_c"),
    ]  # fmt: skip
    for extra, said in cases:
        body: dict[str, Any] = {"model": "smollm2", "messages": ASK, **extra}
        with pytest.raises(BadRequestError, match=said):
            await client.chat.completions.create(**body)
    emulator.tool_replies.append(ToolReply(calls=[("c", "clock", "{}")]))
    body = {"model": "smollm2", "messages": ASK, "tools": [CLOCK.to_openai()]}
    whole = await client.chat.completions.create(**body)
    calls = whole.choices[0].message.model_dump()["tool_calls"]
    assert whole.choices[0].finish_reason == "tool_calls"
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("c", "clock", "{}")]  # fmt: skip
    await client.close()


# --- the real llama_cpp.server with chatml-function-calling ------------------------------------


@pytest.fixture(scope="module")
def tool_server() -> Iterator[RealServer]:
    with llama_cpp_server(chat_format="chatml-function-calling") as running:
        yield running


async def test_a_forced_call_from_the_real_server_is_json_with_the_required_key(
    tool_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _backend(tool_server.base_url, monkeypatch, tool_server.api_key,
                        model=tool_server.model) as backend:  # fmt: skip
        chunks = await reply(backend, choice="weather")
        (call,) = chunks[-1].tool_calls
        assert call.name == "weather"
        assert "city" in json.loads(call.arguments)
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.stop_reason == "tool_calls"
        assert "".join(c.text for c in chunks) == ""  # the call's syntax is not shown
