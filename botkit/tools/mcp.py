"""Every configured MCP server together (`McpTools`), as the tool registry and /tools see
them, and the probe `botkit check` runs on each.

A tool's exposed name starts with its server's, and names are unique within a server, so a
name leads to one server; each server supervises itself (botkit/tools/mcp_server.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from botkit.config.mcp import McpServerConfig
from botkit.tools.mcp_server import Backoff, McpServer
from botkit.tools.spec import ToolResult, ToolSpec

__all__ = ["Backoff", "McpServer", "McpTools", "probe"]

# The SDK's stdio shutdown: 2 s for the server to exit on its own, 2 s after SIGTERM, 2 s to
# reap it after SIGKILL (mcp.client.stdio), plus a margin.
_SHUTDOWN_SECONDS = 10.0


class McpTools:
    """The MCP servers of the config: started and closed together, their tools and calls."""

    def __init__(
        self, servers: Mapping[str, McpServerConfig], backoff: Backoff | None = None
    ) -> None:
        self.servers = {name: McpServer(name, config, backoff) for name, config in servers.items()}

    async def start(self) -> None:
        """Start every server at once; wait at most the longest startup_timeout (a server that
        is not up by then goes on trying in the background, and its status says why)."""
        await asyncio.gather(*(server.start() for server in self.servers.values()))

    async def close(self) -> None:
        """Stop every server."""
        await asyncio.gather(*(server.close() for server in self.servers.values()))

    def specs(self) -> list[ToolSpec]:
        """The tools of every server that is up now, in config order."""
        return [spec for server in self.servers.values() for spec in server.specs]

    def statuses(self) -> dict[str, str]:
        """Each server's one-line status, by name ("ready, 3 tools", "restarting in 8 s after:
        ...")."""
        return {name: server.status for name, server in self.servers.items()}

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the core's limit for this call, within the server's
        *,
        call_id: str = "",
    ) -> ToolResult:
        """Call the tool exposed as NAME; an unknown name or any failure is an is_error
        result (never an exception)."""
        for server in self.servers.values():
            if server.knows(name):
                return await server.call(name, arguments, timeout, call_id=call_id)
        return ToolResult(call_id, name, f"there is no MCP tool {name} (now)", is_error=True)


async def probe(name: str, config: McpServerConfig) -> tuple[bool, str]:
    """Start the server, initialize it and list its tools, within its startup_timeout, then stop
    it: whether that worked, and a line saying how it went ("ok, 3 tools" or the failure)."""
    # No retries: the first failure is the answer.
    server = McpServer(name, config, Backoff(first=3600.0, most=3600.0))
    try:
        await server.start()
        # The supervisor's own deadline ends a start that hangs; past it, the SDK's shutdown of
        # the server (bounded) may take some seconds more.
        await server.wait_until(
            lambda s: s.ready or s.failures > 0, config.startup_timeout + _SHUTDOWN_SECONDS
        )
        if server.ready:
            return True, f"ok, {len(server.specs)} tools"
        if server.last_error is not None:
            return False, server.last_error
        return False, f"not ready within startup_timeout = {config.startup_timeout:g} s"
    finally:
        await server.close()
