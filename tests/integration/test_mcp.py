"""The MCP client against real MCP servers in subprocesses (tests/fixtures/mcp_server.py, on
the SDK's MCPServer), over stdio and streamable HTTP, well-behaved and not: a hung tool, a
crash mid-call, garbage on stdout, no answer to initialize, a server that exits at once, a
changing tool list, a 10 MB result; and `botkit check` probing them."""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.config import McpServerConfig
from botkit.tools import mcp_convert as convert
from botkit.tools import mcp_server
from botkit.tools.mcp import Backoff, McpServer, McpTools
from botkit.tools.spec import ToolCall
from tests.conftest import REPO, MakeConfig, say

SERVER = REPO / "tests" / "fixtures" / "mcp_server.py"
TOOLS = {"echo", "add", "fail", "hang", "crash", "big", "learn", "env_var"}
BIG = 10 * 1024 * 1024
# Restarts in tests come quickly; the order of the waits is what they check.
FAST = Backoff(first=0.05, most=0.2)
# Bounds for waits on conditions, far above what they take, so only a bug runs them out.
WAIT = 60.0


def stdio(mode: str = "stdio", **keys: Any) -> McpServerConfig:
    return McpServerConfig(command=[sys.executable, str(SERVER), mode], **keys)


@pytest.fixture
def http_url() -> Iterator[str]:
    """The test server over streamable HTTP on a port the kernel picked; its URL. One per
    test: a test may change its tool list."""
    yield from _http_server({})


@pytest.fixture
def guarded_url() -> Iterator[str]:
    """The HTTP test server refusing requests without `Authorization: Bearer s3cret`."""
    yield from _http_server({"MCP_TEST_TOKEN": "s3cret"})


def _http_server(env: dict[str, str]) -> Iterator[str]:
    with subprocess.Popen(
        [sys.executable, str(SERVER), "http"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    ) as process:
        try:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], WAIT)
            assert readable, "the HTTP test server did not say its port"
            line = process.stdout.readline()
            assert line.startswith("PORT "), line
            port = int(line.split()[1])
            # The socket listens before the line is printed: a connection now is accepted.
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


@pytest.fixture(params=["stdio", "http"])
def config(request: pytest.FixtureRequest) -> McpServerConfig:
    if request.param == "stdio":
        return stdio()
    url: str = request.getfixturevalue("http_url")
    return McpServerConfig(url=url)


@pytest.fixture
async def server(config: McpServerConfig) -> AsyncIterator[McpServer]:
    server = McpServer("srv", config, FAST)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_lists_and_calls_tools(server: McpServer) -> None:
    assert server.status == "ready, 8 tools"
    specs = {spec.name: spec for spec in server.specs}
    assert set(specs) == {f"srv_{tool}" for tool in TOOLS}
    add = specs["srv_add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert (add.source, add.default_on, add.confirm) == ("mcp:srv", False, False)
    result = await server.call("srv_add", {"a": 2, "b": 40}, 30, call_id="c1")
    assert (result.call_id, result.name, result.content, result.is_error) == (
        "c1", "srv_add", "42", False,
    )  # fmt: skip
    assert (await server.call("srv_echo", {"text": "héllo\nworld"}, 30)).content == "héllo\nworld"


async def test_a_tool_error_is_an_error_result(server: McpServer) -> None:
    result = await server.call("srv_fail", {"reason": "the disk is full"}, 30)
    assert result.is_error
    assert "the disk is full" in result.content
    # A refused call (arguments that do not fit) is an error result too, and the server stays.
    refused = await server.call("srv_add", {"a": "two"}, 30)
    assert refused.is_error
    assert server.status == "ready, 8 tools"


async def test_a_hung_tool_times_out_and_the_next_call_gets_a_new_session(
    server: McpServer,
) -> None:
    began = time.monotonic()
    result = await server.call("srv_hang", {}, 1.0)
    assert result.is_error
    assert result.content.startswith("timed out after 1 s")
    assert time.monotonic() - began < 10
    assert server.status.startswith("restarting")
    # No wait in between: the call waits for the restart (it is due before its deadline).
    again = await server.call("srv_echo", {"text": "back"}, WAIT)
    assert (again.content, again.is_error) == ("back", False)
    assert server.starts == 2


async def test_the_tool_list_follows_list_changed(server: McpServer) -> None:
    assert (await server.call("srv_learn", {"name": "newt"}, 30)).content == "learned newt"
    assert await server.wait_until(lambda s: "srv_newt" in {x.name for x in s.specs}, WAIT)
    assert server.status == "ready, 9 tools"
    assert (await server.call("srv_newt", {}, 30)).content == "I am newt"


async def test_a_10_mb_result_comes_back_whole(server: McpServer) -> None:
    result = await server.call("srv_big", {}, WAIT)
    assert not result.is_error, result.content[:200]
    assert len(result.content) == BIG + 2
    assert result.content[0] == "<"
    assert result.content[-1] == ">"
    assert (await server.call("srv_echo", {"text": "after"}, 30)).content == "after"


async def test_a_crash_mid_call_is_an_error_and_the_server_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = McpServer("srv", stdio(), Backoff(first=0.05, healthy_after=0.0))
    await server.start()
    try:
        for round_ in (1, 2):
            result = await server.call("srv_crash", {}, 30)
            assert result.is_error
            assert "closed the connection during the call (it crashed or exited" in result.content
            assert server.status.startswith("restarting")

            def restarted(s: McpServer, n: int = round_ + 1) -> bool:
                return s.starts == n

            assert await server.wait_until(restarted, WAIT)
            assert (await server.call("srv_add", {"a": 1, "b": 1}, 30)).content == "2"
    finally:
        await server.close()
    assert server.status == "stopped"
    # Each session counted as healthy (healthy_after = 0), so each wait is the first again.
    waits = [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
    assert len(waits) == 2
    assert all(w.endswith("restarting in 0.05 s") for w in waits), waits


async def test_a_server_that_keeps_exiting_is_retried_with_growing_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=mcp_server.__name__)
    server = McpServer("srv", stdio("exit"), FAST)
    await server.start()
    try:
        assert not server.ready
        assert await server.wait_until(lambda s: s.failures >= 5, WAIT)
        assert "after: the server closed the connection" in server.status
        result = await server.call("srv_echo", {"text": "x"}, 0.01)
        assert result.is_error
        assert "the MCP server srv is not available" in result.content
    finally:
        await server.close()
    waits = [r.getMessage().rsplit(" ", 2)[1] for r in caplog.records
             if "restarting in" in r.getMessage()]  # fmt: skip
    assert waits[:5] == ["0.05", "0.1", "0.2", "0.2", "0.2"]


async def test_garbage_on_stdout_is_named_and_nothing_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cret-value-never-logged"
    config = stdio("garbage", env={"API_KEY": secret}, startup_timeout=WAIT)
    server = McpServer("junk", config, FAST)
    began = time.monotonic()
    await server.start()
    try:
        assert time.monotonic() - began < WAIT / 2  # the first line ends it, not a timeout
        assert not server.ready
        assert server.last_error == (
            "the server wrote something on stdout that is not a JSON-RPC message: "
            "'Starting the weather server v1.2 ...'"
        )
        assert "not a JSON-RPC message" in server.status
    finally:
        await server.close()
    assert secret not in caplog.text


async def test_a_server_that_never_answers_initialize_hits_startup_timeout() -> None:
    server = McpServer("mute", stdio("silent", startup_timeout=1.0), FAST)
    began = time.monotonic()
    await server.start()
    try:
        assert time.monotonic() - began < 10
        assert await server.wait_until(lambda s: s.failures >= 1, WAIT)
        assert server.last_error == (
            "no answer to initialize and tools/list within startup_timeout = 1 s"
        )
        assert server.specs == []
    finally:
        await server.close()


async def test_an_unreachable_url_is_retried_and_says_why() -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = McpServer("gone", McpServerConfig(url=f"http://127.0.0.1:{port}/mcp"), FAST)
        await server.start()
        try:
            assert await server.wait_until(lambda s: s.failures >= 2, WAIT)
            assert server.status.startswith("restarting in") or server.status.startswith(
                "starting again after:"
            )
            assert server.last_error is not None
            assert "connect" in server.last_error.lower()
        finally:
            await server.close()


async def test_an_exception_inside_the_supervisor_is_a_status_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = convert.tool_spec
    broken = {"on": True}

    def tool_spec(*args: Any, **kwargs: Any) -> Any:
        if broken["on"]:
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(mcp_server, "tool_spec", tool_spec)  # where the supervisor looks it up
    server = McpServer("srv", stdio(), FAST)
    await server.start()
    try:
        assert server.last_error == "RuntimeError: injected"
        assert not server.ready
        broken["on"] = False
        assert await server.wait_until(lambda s: s.ready, WAIT)
        assert (await server.call("srv_echo", {"text": "ok"}, 30)).content == "ok"
    finally:
        await server.close()


async def test_mcp_tools_routes_calls_and_reports_every_server(http_url: str) -> None:
    tools = McpTools(
        {"one": stdio(confirm=["add"]), "two": McpServerConfig(url=http_url, confirm=True),
         "bad": stdio("garbage")},
        FAST,
    )  # fmt: skip
    await tools.start()
    try:
        names = {spec.name: spec for spec in tools.specs()}
        assert {f"one_{t}" for t in TOOLS} | {f"two_{t}" for t in TOOLS} == set(names)
        assert names["one_add"].confirm
        assert not names["one_echo"].confirm
        assert names["two_echo"].confirm
        statuses = tools.statuses()
        assert statuses["one"] == statuses["two"] == "ready, 8 tools"
        assert "not a JSON-RPC message" in statuses["bad"]
        assert (await tools.call("two_add", {"a": 3, "b": 4}, 30)).content == "7"
        assert (await tools.call("one_echo", {"text": "1"}, 30)).content == "1"
        missing = await tools.call("three_echo", {}, 30, call_id="x")
        assert (missing.is_error, missing.call_id) == (True, "x")
        assert "there is no MCP tool three_echo" in missing.content
    finally:
        await tools.close()
    assert set(tools.statuses().values()) == {"stopped"}


def _botkit(tmp_path: Path, command: str, servers: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n{servers}',
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "botkit", *command.split(), "--config", str(config)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip


def test_botkit_check_probes_each_mcp_server(tmp_path: Path) -> None:
    good = f'[mcp.servers.good]\ncommand = ["{sys.executable}", "{SERVER}", "stdio"]\n'
    bad = f'[mcp.servers.bad]\ncommand = ["{sys.executable}", "{SERVER}", "silent"]\n'
    bad += "startup_timeout = 1\n"
    assert _botkit(tmp_path, "db upgrade", "").returncode == 0
    ok = _botkit(tmp_path, "check", good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "mcp good: ok, 8 tools" in ok.stdout
    failing = _botkit(tmp_path, "check", good + bad)
    assert failing.returncode == 1
    assert "mcp good: ok, 8 tools" in failing.stdout
    assert (
        "problem: mcp bad: no answer to initialize and tools/list within startup_timeout = 1 s"
        in failing.stderr
    )


async def test_a_chat_turns_an_mcp_tool_on_and_the_model_calls_it(make_config: MakeConfig) -> None:
    """Through the whole bot: an MCP server's tools are off until /tools on; then a call the
    model makes reaches the server over stdio, and its result comes back into the turn."""
    backend = ScriptedBackend("local")
    backend.tools_unsupported = None
    server = {"command": [sys.executable, str(SERVER), "stdio"]}
    config = make_config(mcp={"servers": {"calc": server}}, service={"rate_limit_per_minute": 0})
    async with build_bot(config, backends={"local": backend}) as bot:
        assert bot.mcp is not None
        listing = (await say(bot, "/tools")).text
        assert "⛔ calc_add (mcp:calc, off)" in listing
        assert "calc: ready" in listing
        await say(bot, "Hello")
        assert "calc_add" not in [t.name for t in backend.tool_requests[-1][0]]
        assert "calc_add is now on" in (await say(bot, "/tools on calc_add")).text
        backend.enqueue_calls(ToolCall("c1", "calc_add", '{"a": 2, "b": 3}'))
        backend.enqueue("Five.")
        reply = await say(bot, "Add 2 and 3")
        assert "🔧 calc_add(" in reply.text
        assert reply.text.rstrip().endswith("Five.")
        result = backend.prompts[-1][-1]
        assert result == {"role": "tool", "tool_call_id": "c1", "name": "calc_add",
                          "content": "5"}  # fmt: skip
        # Arguments the server's schema refuses never reach it.
        backend.enqueue_calls(ToolCall("c2", "calc_add", '{"a": "two"}'))
        backend.enqueue("Sorry.")
        await say(bot, "Add two")
        refused = backend.prompts[-1][-1]["content"]
        assert "calc_add" in refused
        assert "is not of type 'integer'" in refused or "required" in refused


async def test_secrets_come_from_the_environment_never_the_file(
    guarded_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """env_from and headers_from name botkit's environment variables: the stdio program gets
    the value as its own variable, the HTTP server as a header; an unset one is named in the
    status (never a value), and the server is not reached without it."""
    monkeypatch.setenv("BOTKIT_TEST_MCP_TOKEN", "token-123")
    monkeypatch.setenv("BOTKIT_TEST_MCP_AUTH", "Bearer s3cret")
    caplog.set_level(logging.DEBUG)
    local = McpServer("local", stdio(env_from={"API_TOKEN": "BOTKIT_TEST_MCP_TOKEN"}))
    remote = McpServer("remote", McpServerConfig(
        url=guarded_url, headers_from={"Authorization": "BOTKIT_TEST_MCP_AUTH"}))  # fmt: skip
    unset = McpServer("unset", McpServerConfig(
        url=guarded_url, headers_from={"Authorization": "BOTKIT_TEST_MCP_NOT_SET"}))  # fmt: skip
    plain = McpServer("plain", McpServerConfig(url=guarded_url))
    servers = (local, remote, unset, plain)
    try:
        for server in servers:
            await server.start()
        assert (await local.call("local_env_var", {"name": "API_TOKEN"}, WAIT)).content == (
            "token-123"
        )
        echoed = await remote.call("remote_echo", {"text": "hi"}, WAIT)
        assert (echoed.content, echoed.is_error) == ("hi", False)
        assert await unset.wait_until(lambda s: s.failures > 0, WAIT)
        assert "BOTKIT_TEST_MCP_NOT_SET is not set" in (unset.last_error or "")
        assert await plain.wait_until(lambda s: s.failures > 0, WAIT)
        # The guarded server answers 401 without the header (the SDK does not say which).
        assert "check headers_from" in (plain.last_error or "")
    finally:
        for server in servers:
            await server.close()
    logged = caplog.text
    assert "token-123" not in logged
    assert "s3cret" not in logged
