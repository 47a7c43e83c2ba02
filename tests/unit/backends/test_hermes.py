"""The Hermes tool-call format without a model: the tools block, call and result text, reading
calls back out of a reply, the stream filter that hides call syntax, and the grammars built
from tool schemas."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botkit.backends.hermes import CallFilter, call_text, parse_calls, response_text, tools_block
from botkit.backends.llama_jobs import CallWatch
from botkit.backends.tool_grammar import ToolGrammarError, after_tag_grammar, forced_grammar
from botkit.tools.spec import ToolSpec

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1,
                                                            "maximum": 3}},
        "required": ["city", "days"],
    },
)  # fmt: skip


def test_the_tools_block_is_qwens_wording_with_one_declaration_per_line() -> None:
    block = tools_block([WEATHER])
    assert block.startswith("\n\n# Tools\n\nYou may call one or more functions")
    lines = block.split("tags:\n<tools>")[1].split("\n</tools>")[0].strip().splitlines()
    assert [json.loads(line) for line in lines] == [WEATHER.to_openai()]
    assert block.endswith(
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def test_a_call_is_written_as_the_model_writes_it_and_reads_back_the_same() -> None:
    text = call_text("get_weather", '{"city": "Paris", "days": 2}')
    assert text == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n'
        "</tool_call>"
    )
    parsed = parse_calls(text, itertools.count(7))
    assert parsed.complete
    assert [(c.id, c.name, json.loads(c.arguments)) for c in parsed.calls] == [
        ("call_7", "get_weather", {"city": "Paris", "days": 2})
    ]


def test_arguments_that_are_not_json_are_quoted_so_the_block_stays_one_object() -> None:
    text = call_text("f", "not json")
    inner = text.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")
    assert json.loads(inner) == {"name": "f", "arguments": "not json"}


def test_a_result_is_a_tool_response_block() -> None:
    assert response_text("22 °C") == "<tool_response>\n22 °C\n</tool_response>"


def test_several_calls_and_garbage_are_read_without_fixing_anything() -> None:
    text = (
        '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {"x": </tool_call>'
    )
    parsed = parse_calls(text, itertools.count(1))
    assert parsed.complete  # both blocks are closed: the second is given back as written
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("a", '{"x": 1}'),
        ("b", '{"name": "b", "arguments": {"x":'),
    ]


def test_a_call_cut_off_inside_its_json_is_incomplete() -> None:
    parsed = parse_calls('<tool_call>\n{"name": "a", "arguments": {"x": 12', itertools.count())
    assert not parsed.complete
    assert not parse_calls("no calls here", itertools.count()).complete


def test_an_unclosed_call_whose_json_is_whole_is_complete() -> None:
    parsed = parse_calls('<tool_call>\n{"name": "a", "arguments": {}}', itertools.count())
    assert parsed.complete
    assert parsed.calls[0].arguments == "{}"


@given(
    before=st.text(alphabet="ab <>_clot\n", max_size=30),
    after=st.text(max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_the_filter_shows_exactly_the_text_before_the_tag(
    before: str, after: str, cuts: list[int]
) -> None:
    if "<tool_call>" in before:
        before = before.replace("<tool_call>", "")
    if "<tool_call>"[:-1] in before[-11:]:
        return  # the tag would straddle the join
    reply = before + "<tool_call>" + after
    points = sorted({min(c, len(reply)) for c in cuts})
    pieces = [reply[a:b] for a, b in itertools.pairwise([0, *points, len(reply)])]
    stream = CallFilter()
    shown = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert shown == before
    assert stream.captured == "<tool_call>" + after


def test_a_held_back_prefix_is_shown_when_it_does_not_become_a_tag() -> None:
    stream = CallFilter()
    assert stream.feed("a <tool") == "a "
    assert stream.feed("box>") == "<toolbox>"
    assert stream.feed(" <tool_") == " "
    assert stream.flush() == "<tool_"
    assert not stream.started


def test_the_watch_switches_once_after_a_tag_followed_by_whitespace_only() -> None:
    watch = CallWatch("g")
    assert watch.seen("Sure. <tool") is None
    assert watch.seen("_call>\n") == "g"
    assert watch.seen("<tool_call>") is None  # only once
    stuck = CallWatch("g")
    assert stuck.seen('<tool_call>{"') is None  # text the grammar cannot start from: parse
    assert stuck.fired


def test_a_forced_grammar_wraps_the_call_object_in_the_tags() -> None:
    grammar = forced_grammar(WEATHER)
    assert 'root ::= "<tool_call>\\n" tool-call "\\n</tool_call>"' in grammar
    assert '"\\"get_weather\\""' in grammar
    # the narrow integer range is enforced as an enum of its values
    assert '"1" | "2" | "3"' in grammar
    # raw control characters are not allowed inside JSON strings
    assert "\\x00-\\x1F" in grammar


def test_the_after_tag_grammar_takes_any_of_the_tools() -> None:
    other = ToolSpec("b", "", {"type": "object", "properties": {"q": {"enum": ["x", "y"]}}})
    grammar = after_tag_grammar([WEATHER, other])
    assert "tool-call ::= tool-call-0 | tool-call-1" in grammar
    assert grammar.rstrip().endswith('("\\n" "<tool_call>\\n" tool-call "\\n</tool_call>")*')


def test_nested_definitions_of_two_tools_do_not_collide() -> None:
    def nested(kind: str) -> ToolSpec:
        return ToolSpec(
            kind,
            "",
            {
                "$defs": {"Inner": {"type": "object", "properties": {"v": {"type": kind}}}},
                "type": "object",
                "properties": {"inner": {"$ref": "#/$defs/Inner"}},
            },
        )

    grammar = after_tag_grammar([nested("string"), nested("boolean")])
    assert "t0-Inner" in grammar
    assert "t1-Inner" in grammar


def test_a_schema_the_converter_cannot_take_is_a_clear_error() -> None:
    remote = ToolSpec("fetch", "", {"type": "object", "properties": {"u": {"$ref": "http://x"}}})
    with pytest.raises(ToolGrammarError, match=r"the arguments schema of fetch cannot be turned"):
        forced_grammar(remote)
