"""MCP's tools and results in botkit's shapes: names the model may call, specs, result text;
and the restart backoff's waits."""

from __future__ import annotations

import base64
import re

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
)

from botkit.tools.mcp import Backoff
from botkit.tools.mcp_convert import exposed_name, result_text, tool_spec

OPENAI_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_exposed_names_fit_openai_and_stay_unique() -> None:
    assert exposed_name("git", "status") == "git_status"
    assert exposed_name("web", "fetch.page v2/ünï") == "web_fetch_page_v2__n_"
    long = exposed_name("srv", "x" * 100)
    assert len(long) == 64
    assert long.startswith("srv_xxx")
    taken = {"web_a_b"}
    assert exposed_name("web", "a.b", taken) == "web_a_b_2"
    taken |= {"web_a_b_2"}
    assert exposed_name("web", "a b", taken) == "web_a_b_3"
    cut = exposed_name("srv", "y" * 100, {long.replace("x", "y")})
    assert len(cut) == 64
    assert cut.endswith("_2")
    for name in ("git_status", long, cut, exposed_name("s", "?")):
        assert OPENAI_NAME.match(name)


def test_a_tool_spec_keeps_the_schema_and_fills_what_openai_needs() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    spec = tool_spec("srv", Tool(name="count", description=" Count. ", input_schema=schema),
                     "srv_count", confirm=True)  # fmt: skip
    assert (spec.name, spec.description, spec.parameters) == ("srv_count", "Count.", schema)
    assert (spec.source, spec.confirm, spec.default_on) == ("mcp:srv", True, False)
    bare = tool_spec("srv", Tool(name="ping", input_schema={"type": "object"}), "srv_ping",
                     confirm=False)  # fmt: skip
    assert bare.parameters == {"type": "object", "properties": {}}
    assert bare.description == "the tool ping of the MCP server srv"


def test_result_text_joins_text_and_describes_the_rest() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 1230).decode()
    result = CallToolResult(
        content=[
            TextContent(text="first"),
            ImageContent(data=png, mime_type="image/png"),
            AudioContent(data="!!not base64!!", mime_type="audio/wav"),
            ResourceLink(uri="file:///tmp/a.txt", name="a", mime_type="text/plain"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///b", text="inline")),
            EmbeddedResource(resource=BlobResourceContents(uri="file:///c", blob=png)),
            TextContent(text="last"),
        ]
    )
    assert result_text(result).split("\n\n") == [
        "first",
        "[image/png, 1234 bytes]",
        "[audio/wav, 14 characters of data that is not valid base64]",
        "[link to text/plain, file:///tmp/a.txt]",
        "inline",
        "[binary from file:///c, 1234 bytes]",
        "last",
    ]
    structured = CallToolResult(content=[], structured_content={"temp": 21.5})
    assert result_text(structured) == '{"temp": 21.5}'
    # Text present: the structured copy of it is not repeated.
    both = CallToolResult(content=[TextContent(text="21.5")], structured_content={"r": 21.5})
    assert result_text(both) == "21.5"


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
