"""The `[mcp.servers.NAME]` sections: MCP servers whose tools the model may call.

A server is either a program botkit starts and talks to over stdin/stdout (`command`), or one
already running that it reaches over streamable HTTP (`url`); never both.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from botkit.config.section import Section

__all__ = ["SERVER_NAME_PATTERN", "McpConfig", "McpServerConfig"]

# Short and plain, because it prefixes every tool name the model sees (OpenAI allows
# [A-Za-z0-9_-]{1,64} in a function name).
SERVER_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")
# An environment variable's name; an HTTP header's (RFC 9110's token, simplified).
Variable = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
Header = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]


class McpServerConfig(Section):
    """One MCP server: how to reach it, how long it may take, which tools need a person's OK."""

    # stdio: the program and its arguments, e.g. ["npx", "-y", "@modelcontextprotocol/server-git"].
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    # Streamable HTTP: the endpoint, e.g. "http://127.0.0.1:8000/mcp".
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # stdio only: variables added to the program's environment (besides PATH, HOME and the
    # like); their values are never logged.
    env: dict[str, str] = Field(default_factory=dict)
    # Secrets, never in this file: NAME = "VARIABLE" sets the program's NAME (stdio) or the
    # HTTP header NAME (url) to botkit's environment variable VARIABLE, or to the systemd
    # credential of that name ($CREDENTIALS_DIRECTORY/VARIABLE). Never logged.
    # e.g. env_from = { GITHUB_TOKEN = "BOTKIT_GITHUB_TOKEN" }
    #      headers_from = { Authorization = "BOTKIT_MCP_AUTH" }   # holding "Bearer …"
    env_from: dict[Variable, Variable] = Field(default_factory=dict)
    headers_from: dict[Header, Variable] = Field(default_factory=dict)
    # stdio only: the program's working directory (default: botkit's).
    cwd: str | None = Field(default=None, min_length=1)
    # Seconds one tool call may take; past it the call fails and the server is restarted.
    timeout: float = Field(default=30.0, gt=0, le=3600)
    # Seconds to start (or reach) the server, initialize it and list its tools.
    startup_timeout: float = Field(default=20.0, gt=0, le=600)
    # true: every tool of this server needs a person in the chat to confirm each call; or a
    # list of the tool names (as the server names them) that do.
    confirm: bool | list[Annotated[str, Field(min_length=1)]] = False

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if self.command is None and self.url is None:
            raise ValueError(
                "set either command = [program, args...] (a server botkit starts, over stdio) "
                'or url = "http://host:port/path" (a running server, over streamable HTTP)'
            )
        if self.command is not None and self.url is not None:
            raise ValueError(
                "set command (stdio) or url (streamable HTTP), not both: a server is reached "
                "one way"
            )
        if self.url is not None and (self.env or self.env_from or self.cwd is not None):
            raise ValueError(
                "env, env_from and cwd apply to a server botkit starts (command); a url server "
                "runs elsewhere, so leave them out (headers_from sends it secrets)"
            )
        if self.command is not None and self.headers_from:
            raise ValueError(
                "headers_from applies to a url server; a server botkit starts takes its "
                "secrets as environment variables: env_from"
            )
        return self

    def needs_confirm(self, tool: str) -> bool:
        """Whether a call of this server's tool TOOL waits for a person to confirm it."""
        return self.confirm if isinstance(self.confirm, bool) else tool in self.confirm


class McpConfig(Section):
    """`[mcp]`: the MCP servers, by name (`[mcp.servers.NAME]`)."""

    servers: dict[str, McpServerConfig] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in servers:
            if not SERVER_NAME_PATTERN.match(name):
                raise ValueError(
                    f"mcp.servers.{name}: a server's name is 1 to 32 of a-z, 0-9, _ and - "
                    "(it prefixes the names of its tools)"
                )
        return servers
