"""One MCP server, supervised: connected in a background task, its tools listed at start and
on `notifications/tools/list_changed`, restarted with backoff when it crashes, hangs or writes
garbage, so a broken server costs a chat one error result and never wedges the bot.

The SDK's transports and ClientSession live in anyio task groups that must be entered and left
by one task; that task is the supervisor's, and calls from the chats' tasks only send requests
through the session it holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp import ClientSession
from mcp.client._transport import ReadStream, TransportStreams
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    Implementation,
    PaginatedRequestParams,
    Tool,
    ToolListChangedNotification,
)
from pydantic import ValidationError

from botkit import __version__
from botkit.config.mcp import McpServerConfig
from botkit.tools.mcp_convert import exposed_name, result_text, tool_spec
from botkit.tools.mcp_transport import MissingSecret, transport
from botkit.tools.spec import ToolResult, ToolSpec

__all__ = ["Backoff", "McpServer"]

log = logging.getLogger(__name__)

# One tool list page after another, at most this many: a server whose cursor never ends
# cannot keep the supervisor listing forever.
_MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds between restarts: first, doubling up to most; a session that stayed up for
    healthy_after seconds starts the count again."""

    first: float = 1.0
    most: float = 60.0
    healthy_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before the restart that follows FAILURES failures in a row (1 or more)."""
        return min(self.most, self.first * 2.0 ** (failures - 1))


class _Fault(Exception):
    """Why the supervisor ends a session: the server broke it, or a call asked for a restart."""


class McpServer:
    """One configured MCP server: its tools as ToolSpecs, calls, and a one-line status."""

    def __init__(self, name: str, config: McpServerConfig, backoff: Backoff | None = None) -> None:
        self.name = name
        self.config = config
        self.backoff = backoff or Backoff()
        # Sessions that became ready, and sessions that failed (to start, or later).
        self.starts = 0
        self.failures = 0
        self.last_error: str | None = None
        self._status = "not started"
        self._session: ClientSession | None = None
        self._generation = 0
        self._tools: dict[str, tuple[str, ToolSpec]] = {}  # exposed name -> (its name, spec)
        self._wake: asyncio.Queue[str | None] = asyncio.Queue()  # None: list the tools again
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready_at: float | None = None
        self._retry_at: float | None = None  # when the next start begins, in backoff
        self._closing = False
        self._connecting = False  # a session is being set up (or torn down to restart)

    # -- what the bot reads --------------------------------------------------------------

    @property
    def status(self) -> str:
        """'ready, N tools', 'starting', 'restarting in 8 s after: REASON', 'stopped'."""
        return self._status

    @property
    def ready(self) -> bool:
        """Whether a session is up and its tools are listed."""
        return self._session is not None

    @property
    def specs(self) -> list[ToolSpec]:
        """The tools as the model sees them (none while the server is down)."""
        return [spec for _tool, spec in self._tools.values()] if self.ready else []

    def knows(self, exposed: str) -> bool:
        """Whether EXPOSED is one of this server's tools (as last listed, even while down)."""
        return exposed in self._tools

    async def wait_until(
        self,
        predicate: Callable[[McpServer], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> bool:
        """Wait (at most TIMEOUT seconds) until PREDICATE(self) holds; whether it does."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return predicate(self)
        return True

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor; wait until the first session is ready or has failed, never
        longer than startup_timeout (a failed one keeps being retried in the background)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._supervise(), name=f"mcp server {self.name}")
        await self.wait_until(
            lambda s: s.ready or s.failures > 0 or s._task is None or s._task.done(),
            self.config.startup_timeout,
        )

    async def close(self) -> None:
        """Stop the supervisor and the server (a stdio server gets its stdin closed, then
        SIGTERM, then SIGKILL: the SDK bounds each wait)."""
        task, self._task = self._task, None
        if task is not None:
            # The flag is what ends the loop: the SDK's anyio scopes may turn the cancellation
            # into an ordinary end of the session (seen with streamable HTTP).
            self._closing = True
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._session = None
        self._connecting, self._retry_at = False, None
        self._set_status("stopped")

    # -- calls --------------------------------------------------------------------------

    async def call(
        self,
        exposed: str,
        arguments: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the core's limit for this call, within the server's
        *,
        call_id: str = "",
    ) -> ToolResult:
        """Call the tool the model knows as EXPOSED; a failure of any kind is an is_error
        result saying what happened (never an exception). The server's own timeout bounds
        TIMEOUT; a call past it restarts the server."""
        started = time.monotonic()
        timeout = min(timeout, self.config.timeout)

        def result(text: str, is_error: bool = False) -> ToolResult:
            seconds = time.monotonic() - started
            return ToolResult(call_id, exposed, text, is_error=is_error, seconds=seconds)

        deadline = started + timeout

        def hopeless(s: McpServer) -> bool:
            # Not starting, and the next start is after this call's deadline (or never).
            return not s._connecting and (s._retry_at is None or s._retry_at >= deadline)

        # A server coming up, or retried before the deadline, is waited for: a call right
        # after a restart gets the new session, not "not available".
        await self.wait_until(lambda s: s.ready or hopeless(s), timeout)
        session, generation = self._session, self._generation
        if session is None:
            return result(f"the MCP server {self.name} is not available ({self._status})", True)
        entry = self._tools.get(exposed)
        if entry is None:
            return result(f"the MCP server {self.name} has no tool {exposed}", True)
        tool = entry[0]
        try:
            async with asyncio.timeout(max(0.0, timeout - (time.monotonic() - started))):
                reply = await session.call_tool(tool, arguments)
        except TimeoutError:
            why = f"a call of {tool} timed out after {timeout:g} s"
            self._restart(generation, why)
            return result(
                f"timed out after {timeout:g} s (the MCP server {self.name} is being restarted)",
                True,
            )
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._restart(generation, f"the connection closed during a call of {tool}")
                return result(
                    f"the MCP server {self.name} closed the connection during the "
                    f"call (it crashed or exited: {exc.message}); it is being "
                    "restarted",
                    True,
                )
            return result(f"the MCP server {self.name} refused the call: {exc.message}", True)
        except Exception as exc:  # whatever the SDK raises, the chat goes on
            log.warning("mcp %s: a call of %s failed: %r", self.name, tool, exc)
            return result(f"the call to the MCP server {self.name} failed: {exc}", True)
        return result(result_text(reply), reply.is_error)

    def _restart(self, generation: int, reason: str) -> None:
        """Ask the supervisor to end the session GENERATION (not a newer one) for REASON."""
        if generation == self._generation and self._session is not None:
            # Down from now on: the next call waits for the new session, not this one.
            self._session = None
            self._connecting = True
            self._set_status(f"restarting after: {reason}")
            self._wake.put_nowait(reason)

    # -- the supervisor -------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures_in_row = 0
        while True:
            self._set_status(
                "starting"
                if self.last_error is None
                else f"starting again after: {self.last_error}"
            )
            self._ready_at = None
            self._retry_at = None
            self._connecting = True
            try:
                await self._run_session()
                reason = "the session ended"
            except Exception as exc:  # a server's failure never escapes
                reason = _describe(exc)
            if self._closing:
                return
            self._session = None
            self._connecting = False
            self._generation += 1
            self.failures += 1
            self.last_error = reason
            up_since = self._ready_at
            if up_since is not None and time.monotonic() - up_since >= self.backoff.healthy_after:
                failures_in_row = 0
            failures_in_row += 1
            delay = self.backoff.delay(failures_in_row)
            log.warning("mcp %s: %s; restarting in %g s", self.name, reason, delay)
            self._retry_at = time.monotonic() + delay
            self._set_status(f"restarting in {delay:g} s after: {reason}")
            await asyncio.sleep(delay)

    async def _run_session(self) -> None:
        """Connect, initialize, list the tools, then serve until something ends the session
        (always by an exception)."""
        limit = self.config.startup_timeout
        self._wake = asyncio.Queue()  # what an earlier session was asked does not apply
        scope = anyio.CancelScope(deadline=anyio.current_time() + limit)
        try:
            with scope:
                await self._connected(scope)
        except Exception as exc:
            if scope.cancel_called and self._ready_at is None:
                raise _Fault(_startup_timeout(limit)) from exc
            raise
        if scope.cancel_called and self._ready_at is None:
            raise _Fault(_startup_timeout(limit))

    async def _connected(self, scope: anyio.CancelScope) -> None:
        async with self._transport() as (read, write):
            send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
            async with anyio.create_task_group() as group:
                group.start_soon(self._relay, read, send)
                async with ClientSession(
                    receive,
                    write,
                    message_handler=self._on_message,
                    client_info=Implementation(name="botkit", version=__version__),
                ) as session:
                    await session.initialize()
                    await self._list_tools(session)
                    scope.deadline = math.inf
                    self._ready_at = time.monotonic()
                    self._session = session
                    self._connecting = False
                    self.starts += 1
                    self._set_status(f"ready, {len(self._tools)} tools")
                    log.info("mcp %s: %s", self.name, self._status)
                    await self._serve(session)

    async def _serve(self, session: ClientSession) -> None:
        while True:
            reason = await self._wake.get()
            if reason is not None:
                raise _Fault(reason)
            try:
                with anyio.fail_after(self.config.timeout):
                    await self._list_tools(session)
            except TimeoutError:
                raise _Fault(f"tools/list took over {self.config.timeout:g} s") from None
            self._set_status(f"ready, {len(self._tools)} tools")
            log.info("mcp %s: the tools changed: %s", self.name, ", ".join(self._tools))

    async def _list_tools(self, session: ClientSession) -> None:
        tools: list[Tool] = []
        cursor: str | None = None
        for _page in range(_MAX_PAGES):
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        listed: dict[str, tuple[str, ToolSpec]] = {}
        for tool in tools:
            name = exposed_name(self.name, tool.name, set(listed))
            confirm = self.config.needs_confirm(tool.name)
            listed[name] = (tool.name, tool_spec(self.name, tool, name, confirm=confirm))
        self._tools = listed

    async def _relay(
        self,
        read: ReadStream[SessionMessage | Exception],
        send: MemoryObjectSendStream[SessionMessage | Exception],
    ) -> None:
        """Pass the server's messages to the session; end the session, with a reason, on the
        first thing that is not a message (a line of garbage) or when the stream ends."""
        async with send:
            async for item in read:
                if isinstance(item, Exception):
                    raise _Fault(_describe_garbage(item, stdio=self.config.command is not None))
                await send.send(item)
        if self.config.command is not None:
            raise _Fault("the server closed the connection (it exited or crashed)")
        # The SDK ends an HTTP session without saying why: a 401 or 403 looks the same.
        raise _Fault(
            "the server ended the session or refused the request (if it needs authorization: "
            "check headers_from)"
        )

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, ToolListChangedNotification):
            self._wake.put_nowait(None)

    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        try:
            return transport(self.config)
        except MissingSecret as exc:
            raise _Fault(str(exc)) from None

    def _set_status(self, status: str) -> None:
        self._status = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _startup_timeout(limit: float) -> str:
    return f"no answer to initialize and tools/list within startup_timeout = {limit:g} s"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: Exception) -> str:
    """A failure as one line fit for a status and a log (never the environment's values)."""
    leaves = _leaves(exc)
    first = next((leaf for leaf in leaves if isinstance(leaf, _Fault)), leaves[0])
    if isinstance(first, _Fault | MCPError):
        return str(first) if isinstance(first, _Fault) else f"the server said: {first.message}"
    if isinstance(first, OSError):
        return f"cannot start or reach the server: {first}"
    return f"{type(first).__name__}: {first}"


def _describe_garbage(exc: Exception, *, stdio: bool) -> str:
    where = "on stdout" if stdio else "over HTTP"
    text = ""
    if isinstance(exc, ValidationError) and exc.errors():
        text = f": {str(exc.errors()[0].get('input', ''))[:80]!r}"
    return f"the server wrote something {where} that is not a JSON-RPC message{text}"
