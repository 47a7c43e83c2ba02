"""How botkit reaches an MCP server: a program it starts (stdio, with its environment and
secrets) or a running server (streamable HTTP, with the headers its secrets make)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from mcp import StdioServerParameters, stdio_client
from mcp.client._transport import TransportStreams
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from botkit.config.mcp import McpServerConfig
from botkit.secrets import read_secret

__all__ = ["MAX_HTTP_EVENT_BYTES", "MissingSecret", "secrets", "transport"]

# A 10 MB tool result is one server-sent event; the SDK's default cap (1 MiB) would cut it.
# The result's size limit for the model is the core's; this only bounds the transport.
MAX_HTTP_EVENT_BYTES = 64 * 1024 * 1024


class MissingSecret(Exception):
    """A secret the server's config takes from botkit's environment is not set."""


def transport(config: McpServerConfig) -> AbstractAsyncContextManager[TransportStreams]:
    """The connection to the server config describes (MissingSecret before any is made)."""
    if config.command is not None:
        program, *args = config.command
        env = {**config.env, **secrets(config.env_from)}
        params = StdioServerParameters(command=program, args=args, env=env or None,
                                       cwd=config.cwd)  # fmt: skip
        return stdio_client(params)
    assert config.url is not None  # the config's validator: command or url
    return _http(config.url, secrets(config.headers_from))


def secrets(names: Mapping[str, str]) -> dict[str, str]:
    """NAME: the secret of its variable (the environment, else systemd's credentials);
    MissingSecret naming the variable (never a value) when one is not set."""
    found = {}
    for name, variable in names.items():
        value = read_secret(variable, variable)
        if value is None:
            raise MissingSecret(
                f"{variable} is not set (in the environment or $CREDENTIALS_DIRECTORY), and "
                f"{name} is taken from it"
            )
        found[name] = value
    return found


@asynccontextmanager
async def _http(url: str, headers: dict[str, str]) -> AsyncIterator[TransportStreams]:
    """Streamable HTTP to url, sending headers (the SDK's own client, closed with it)."""
    if not headers:
        async with streamable_http_client(url, max_sse_event_size=MAX_HTTP_EVENT_BYTES) as s:
            yield s
        return
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(
            url, http_client=client, max_sse_event_size=MAX_HTTP_EVENT_BYTES
        ) as streams,
    ):
        yield streams
