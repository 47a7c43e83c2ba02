"""[mcp.servers.NAME]: one transport, names fit for tool names, stdio-only keys refused for
a url, every key documented in config.example.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from botkit.config import ConfigError, McpServerConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def load(tmp_path: Path, text: str) -> McpServerConfig:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return next(iter(load_config(path).mcp.servers.values()))


def test_a_stdio_and_a_url_server(tmp_path: Path) -> None:
    server = load(tmp_path, '[mcp.servers.git]\ncommand = ["uvx", "mcp-server-git"]\n')
    assert (server.command, server.url, server.timeout, server.startup_timeout) == (
        ["uvx", "mcp-server-git"], None, 30.0, 20.0,
    )  # fmt: skip
    assert not server.needs_confirm("commit")
    server = load(tmp_path, '[mcp.servers.s]\nurl = "http://h:8000/mcp"\nconfirm = ["rm"]\n')
    assert server.needs_confirm("rm")
    assert not server.needs_confirm("ls")
    server = load(tmp_path, '[mcp.servers.s]\nurl = "https://x/mcp"\nconfirm = true\n')
    assert server.needs_confirm("anything")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[mcp.servers.a]\ncommand = ["x"]\nurl = "http://h/mcp"\n', "not both"),
        ("[mcp.servers.a]\ntimeout = 5\n", "set either command = [program, args...]"),
        (
            '[mcp.servers.a]\nurl = "http://h/mcp"\nenv = { K = "v" }\n',
            "env, env_from and cwd apply to",
        ),
        ('[mcp.servers.a]\nurl = "http://h/mcp"\ncwd = "/tmp"\n', "env, env_from and cwd apply to"),
        (
            '[mcp.servers.a]\ncommand = ["x"]\nheaders_from = { A = "B" }\n',
            "headers_from applies to",
        ),
        ('[mcp.servers.a]\ncommand = ["x"]\nenv_from = { A = "not a name" }\n', "env_from"),
        ('[mcp.servers.a]\nurl = "ftp://h/mcp"\n', "should match pattern"),
        ("[mcp.servers.a]\ncommand = []\n", "at least 1 item"),
        ('[mcp.servers.a]\ncommand = ["x"]\ntimeout = 0\n', "greater than 0"),
        ('[mcp.servers.a]\ncommand = ["x"]\ntimeout = 7200\n', "less than or equal to 3600"),
        ('[mcp.servers.a]\ncommand = ["x"]\ncomand = ["y"]\n', "comand: Extra inputs"),
        ('[mcp.servers.Git]\ncommand = ["x"]\n', "mcp.servers.Git: a server's name is 1 to 32"),
        (f'[mcp.servers.{"a" * 33}]\ncommand = ["x"]\n', "1 to 32 of a-z, 0-9, _ and -"),
        ('[mcp.servers."a.b"]\ncommand = ["x"]\n', "1 to 32 of a-z, 0-9, _ and -"),
    ],
)
def test_bad_servers_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="mcp") as info:
        load(tmp_path, text)
    assert message in str(info.value)


def test_every_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "[mcp.servers." in text
    for key in McpServerConfig.model_fields:
        assert f"# {key} = " in text, key
    # The example's servers are commented out: a fresh config starts none.
    assert load_config(EXAMPLE).mcp.servers == {}
