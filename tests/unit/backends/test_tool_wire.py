"""Tool calls on the wire, without a server: OpenAI's streamed fragments assembled into calls,
a refusal of `tools` told apart from other errors, and Ollama's shapes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from botkit.backends.base import BackendError, Message
from botkit.backends.ollama_tools import ollama_calls, ollama_messages, ollama_tools
from botkit.backends.openai_tools import (
    MAX_ARGUMENTS,
    MAX_CALLS,
    ToolCallFragments,
    tool_refusal,
    wire_tool_choice,
    wire_tools,
)
from botkit.backends.token_estimate import TokenEstimator
from botkit.tools.spec import ToolCall, ToolSpec

WHERE = "the model server at http://x/v1"
WEATHER = ToolSpec("weather", "The weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]})  # fmt: skip
CLOCK = ToolSpec("clock", "The time now.")


def fragment(index: Any = 0, id: str | None = None, name: str | None = None,
             arguments: Any = None) -> dict[str, Any]:  # fmt: skip
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    out: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        out["id"] = id
    return out


def assembled(*fragments: dict[str, Any]) -> tuple[ToolCall, ...]:
    calls = ToolCallFragments(WHERE)
    for f in fragments:
        calls.add(f)
    return calls.calls()


def test_two_parallel_calls_interleaved_are_assembled_by_index() -> None:
    calls = assembled(
        fragment(0, "call_a", "weather", ""), fragment(1, "call_b", "clock", ""),
        fragment(0, arguments='{"ci'), fragment(1, arguments="{"), fragment(0, arguments='ty": '),
        fragment(1, arguments="}"), fragment(0, arguments='"Paris"}'),
    )  # fmt: skip
    assert calls == (ToolCall("call_a", "weather", '{"city": "Paris"}'),
                     ToolCall("call_b", "clock", "{}"))  # fmt: skip


def test_llama_cpp_servers_repeated_id_and_name_are_not_doubled() -> None:
    # llama_cpp.server sends the id and the name again with every piece of the arguments.
    pieces = ['{"city"', ': "Oslo"', "}"]
    calls = assembled(*(fragment(0, "call__0_weather_cmpl-1", "weather", p) for p in pieces))
    assert calls == (ToolCall("call__0_weather_cmpl-1", "weather", '{"city": "Oslo"}'),)


def test_a_call_without_an_id_gets_one_made_up() -> None:
    assert assembled(fragment(2, name="clock", arguments="{}"))[0].id == "call_2"


def test_arguments_that_are_not_json_reach_the_core_as_written() -> None:
    (call,) = assembled(fragment(0, "c", "weather", '{"city": Paris'))
    assert call.arguments == '{"city": Paris'


def test_arguments_sent_as_an_object_are_written_out_as_json() -> None:
    (call,) = assembled(fragment(0, "c", "weather", {"city": "Zürich"}))
    assert json.loads(call.arguments) == {"city": "Zürich"}


@pytest.mark.parametrize(
    ("fragments", "said"),
    [
        ([{"function": {"name": "clock"}}], "a fragment without a valid `index` (None)"),
        ([fragment("0", "c", "clock")], "a fragment without a valid `index` ('0')"),
        ([fragment(-1, "c", "clock")], "a fragment without a valid `index` (-1)"),
        ([fragment(0, "c", "weather", 42)], "call 0's arguments came as a int, not as JSON"),
        ([fragment(0, "c", "weather", "{"), fragment(0, arguments={"a": 1})],
         "call 0's arguments came as a dict"),
        ([fragment(0, "c", arguments="{}")], "call 0 has no function name"),
        ([fragment(0, "c", "weather"), fragment(0, name="clock")],
         "call 0 changed its name from 'weather' to 'clock'"),
        ([{"index": 0, "function": "weather"}], "call 0's `function` is a str"),
    ],
)  # fmt: skip
def test_a_malformed_stream_is_a_clear_error(fragments: list[dict[str, Any]], said: str) -> None:
    with pytest.raises(BackendError) as caught:
        assembled(*fragments)
    assert f"{WHERE} sent a broken tool call: {said}" in str(caught.value)


def test_runaway_arguments_are_cut_with_a_clear_error() -> None:
    calls = ToolCallFragments(WHERE)
    calls.add(fragment(0, "c", "weather", '{"city": "'))
    calls.add(fragment(0, arguments="x" * (MAX_ARGUMENTS - 10)))  # exactly the limit: taken
    with pytest.raises(BackendError, match=r"call 0's arguments ran past 64 KiB \(weather\)"):
        calls.add(fragment(0, arguments="x"))


def test_too_many_calls_are_refused() -> None:
    calls = ToolCallFragments(WHERE)
    for i in range(MAX_CALLS):
        calls.add(fragment(i, f"c{i}", "clock", "{}"))
    with pytest.raises(BackendError, match=f"more than {MAX_CALLS} calls in one reply"):
        calls.add(fragment(MAX_CALLS, "c", "clock", "{}"))


def test_tool_choice_and_tools_on_the_wire() -> None:
    assert wire_tool_choice("auto") == "auto"
    assert wire_tool_choice("none") == "none"
    assert wire_tool_choice("weather") == {"type": "function", "function": {"name": "weather"}}
    assert wire_tools([WEATHER, CLOCK], "none") == []
    assert [t["function"]["name"] for t in wire_tools([WEATHER, CLOCK], "clock")] == [
        "weather", "clock"]  # fmt: skip
    with pytest.raises(BackendError, match=r"tool_choice names 'calendar', which is not among "
                                           r"the tools \(weather, clock\)"):  # fmt: skip
        wire_tools([WEATHER, CLOCK], "calendar")


def _error(status: int, body: dict[str, Any]) -> openai.APIStatusError:
    response = httpx.Response(status, request=httpx.Request("POST", "http://x/v1/chat"))
    kinds = {400: openai.BadRequestError, 422: openai.UnprocessableEntityError,
             500: openai.InternalServerError}  # fmt: skip
    return kinds[status](body["message"], response=response, body=body)


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (400, {"message": "tools is not supported in this model.", "param": "tools"}, True),
        (400, {"message": "Invalid value", "param": "tool_choice"}, True),
        (400, {"message": '"auto" tool choice requires --enable-auto-tool-choice and '
                          "--tool-call-parser to be set", "param": None}, True),  # vLLM
        (500, {"message": "tools param requires --jinja flag"}, True),  # llama-server
        (400, {"message": "Unsupported param: tool_choice"}, True),  # llama-server
        # A refusal of a message that quotes the user's words about tools is not about tools.
        (400, {"message": "Invalid 'messages[1].content': 'list your tools' is not allowed.",
               "param": "messages[1].content"}, False),
        (400, {"message": "Unrecognized request argument supplied: top_k"}, False),
        (500, {"message": "model crashed while using tools"}, False),
    ],
)  # fmt: skip
def test_a_refusal_of_tools_is_told_from_other_errors(
    status: int, body: dict[str, Any], refused: bool
) -> None:
    reason = tool_refusal(_error(status, body))
    assert (reason is not None) == refused
    if refused:
        assert reason == f"the server refused `tools` ({status}: {body['message']})"


def test_messages_with_calls_and_results_in_ollamas_shape() -> None:
    messages: list[Message] = [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_0", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": ""}},
            {"id": "call_2", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": Par'}},
        ]},
        {"role": "tool", "tool_call_id": "call_0", "name": "weather", "content": "sunny"},
    ]  # fmt: skip
    assert ollama_messages(messages) == [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "clock", "arguments": {}}},
            {"function": {"name": "weather", "arguments": {"_raw": '{"city": Par'}}},
        ]},
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
    ]  # fmt: skip


def test_ollama_has_no_tool_choice_so_tools_are_chosen_here() -> None:
    assert ollama_tools([WEATHER, CLOCK], "none") == []
    assert ollama_tools([WEATHER, CLOCK], "clock") == [CLOCK.to_openai()]
    assert ollama_tools([WEATHER, CLOCK], "auto") == [WEATHER.to_openai(), CLOCK.to_openai()]


def test_ollama_calls_get_ids_and_json_text() -> None:
    raw = [{"function": {"name": "weather", "arguments": {"city": "Paris"}}},
           {"function": {"name": "clock", "arguments": {}}}]  # fmt: skip
    assert ollama_calls(raw, 1, "Ollama") == [
        ToolCall("call_1", "weather", '{"city": "Paris"}'),
        ToolCall("call_2", "clock", "{}"),
    ]
    with pytest.raises(BackendError, match="Ollama sent a broken tool call: call 0 has no"):
        ollama_calls([{"function": {"arguments": {}}}], 0, "Ollama")
    with pytest.raises(BackendError, match="call 0's arguments came as a list"):
        ollama_calls([{"function": {"name": "clock", "arguments": [1]}}], 0, "Ollama")


def test_the_estimate_counts_a_messages_tool_calls() -> None:
    estimator = TokenEstimator()
    plain: Message = {"role": "assistant", "content": ""}
    calling: Message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_0", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}' * 10}}]}  # fmt: skip
    assert estimator.message(calling) > estimator.message(plain) + 90
