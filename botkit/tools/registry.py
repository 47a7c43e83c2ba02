"""The bot's tools: plugin commands declared as tools and MCP servers' tools, offered to a
turn's model as the chat has them on, and each call run within its bounds.

Bounds, in the order a call meets them: the tool must have been offered; its arguments must be
a JSON object valid for its schema (a command's own pydantic check, or JSON Schema for an MCP
tool); the per-chat rate limit ([tools] per_minute, the commands' limiter); a person's
confirmation where the tool asks for one; the timeout; the result's size. A failure at any
step is the call's result, said plainly, so the model and the chat see it and the turn goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import jsonschema

from botkit.backends.base import Backend, ToolCalling
from botkit.config import ToolsConfig
from botkit.core.commands import Command, CommandError, CommandRegistry
from botkit.core.limits import RateLimiter
from botkit.core.settings import ChatSettings
from botkit.core.turn_source import TurnSource
from botkit.tools.box import ToolOffer
from botkit.tools.confirm import Confirmations
from botkit.tools.schema import command_tool
from botkit.tools.spec import ToolCall, ToolCallError, ToolResult, ToolSpec

__all__ = ["McpSource", "RunCommand", "ToolRegistry"]

log = logging.getLogger(__name__)

# What every model API accepts as a function's name (OpenAI: ^[a-zA-Z0-9_-]{1,64}$).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Runs a command as a tool in the turn's chat (the router's middleware and handler, without
# waiting for the chat's turns: the tool runs inside one).
RunCommand = Callable[[TurnSource, Command, dict[str, Any]], Awaitable[str | None]]
Notify = Callable[[str], Awaitable[None]]


class McpSource(Protocol):
    """The MCP servers' tools (botkit.tools.mcp.McpTools)."""

    async def start(self) -> None:
        """Connect to every server in the background (never waits for a slow one)."""
        ...

    async def close(self) -> None:
        """Stop every server."""
        ...

    def specs(self) -> list[ToolSpec]:
        """Every server's tools, as exposed to models."""
        ...

    async def call(self, name: str, arguments: dict[str, Any], seconds: float) -> ToolResult:
        """Run one tool; the result says what went wrong, if anything."""
        ...

    def statuses(self) -> dict[str, str]:
        """Each server's state, in words."""
        ...


class ToolRegistry:
    """Every tool of the bot, and the one way a call is run."""

    def __init__(
        self,
        config: ToolsConfig,
        commands: CommandRegistry,
        run_command: RunCommand,
        mcp: McpSource | None = None,
    ) -> None:
        self.config = config
        self._commands = commands
        self._run_command = run_command
        self.mcp = mcp
        self.confirmations = Confirmations()
        self._limiter = RateLimiter(config.per_minute)
        self._warned: set[str] = set()
        self._local_cache: dict[str, tuple[ToolSpec, Command]] = {}
        self._local_for = -1  # how many commands the cache was built from

    @property
    def max_rounds(self) -> int:
        """[tools] max_rounds."""
        return self.config.max_rounds

    @property
    def max_calls(self) -> int:
        """[tools] max_calls."""
        return self.config.max_calls

    def _local(self) -> dict[str, tuple[ToolSpec, Command]]:
        """The commands declared as tools, with their specs (built once per set of commands:
        a schema from a signature is a pydantic model, too dear to build every turn)."""
        commands = self._commands.all()
        if self._local_for != len(commands):
            self._local_cache = {c.name: (command_tool(c), c) for c in commands if c.tool}
            self._local_for = len(commands)
        return self._local_cache

    def specs(self) -> list[ToolSpec]:
        """Every tool: botkit's and the plugins', then the MCP servers' (a name no model API
        accepts is left out, with a warning: one bad name would make a server refuse all)."""
        mcp = self.mcp.specs() if self.mcp is not None else []
        found = [spec for spec, _ in self._local().values()] + mcp
        kept = [s for s in found if _NAME.fullmatch(s.name)]
        for spec in found:
            if spec not in kept and spec.name not in self._warned:
                self._warned.add(spec.name)
                log.warning("tool %r from %s left out: a tool's name must match %s",
                            spec.name, spec.source, _NAME.pattern)  # fmt: skip
        return kept

    @staticmethod
    def is_on(spec: ToolSpec, settings: ChatSettings) -> bool:
        """Whether the chat has the tool on (its /tools switch, else the tool's default)."""
        return settings.tools.get(spec.name, spec.default_on)

    def can_force(self, backend: Backend) -> str | None:
        """None when a call can be forced on backend (/tool NAME); otherwise why not."""
        if not self.config.enabled:
            return "tools are off for this bot ([tools] enabled = false)"
        if not isinstance(backend, ToolCalling):
            return f"backend {backend.name!r} cannot call tools"
        return None

    async def support(self, backend: Backend) -> str | None:
        """None when backend's model decides on its own to call the tools it is given;
        otherwise why not (a call may still be forced where can_force allows)."""
        problem = self.can_force(backend)
        if problem is not None or not isinstance(backend, ToolCalling):
            return problem
        try:
            return await backend.tool_support()
        except Exception as exc:
            log.warning("could not ask %s whether it calls tools: %s", backend.name, exc)
            return f"backend {backend.name!r} could not say whether it calls tools ({exc})"

    def find(self, name: str, settings: ChatSettings) -> ToolSpec:
        """The tool called name, on in this chat (CommandError saying which are, if not)."""
        specs = self.specs()
        spec = next((s for s in specs if s.name == name), None)
        if spec is None or not self.is_on(spec, settings):
            on = ", ".join(s.name for s in specs if self.is_on(s, settings)) or "none"
            state = "is off in this chat (/tools on NAME)" if spec else "does not exist"
            raise CommandError(f"the tool {name!r} {state}; the tools on here: {on}")
        return spec

    async def offer(
        self, ctx: TurnSource, backend: Backend, forced: str | None = None
    ) -> ToolOffer:
        """The tools on in ctx's chat that backend's model can be given, and their cost;
        forced: the one tool the first round must call (offered alone)."""
        on = tuple(s for s in self.specs() if self.is_on(s, ctx.settings))
        if forced is not None:
            on = tuple(s for s in on if s.name == forced)
        if not on:
            return ToolOffer(note="no tool is on in this chat (/tools lists them)")
        problem = await self.support(backend)
        if problem is not None and (forced is None or self.can_force(backend) is not None):
            return ToolOffer(note=problem)
        assert isinstance(backend, ToolCalling)
        try:
            tokens = await backend.tool_tokens(on)
        except Exception as exc:  # the server's tokenizer is down: the chat goes on without
            log.warning("could not count the tools' tokens on %s: %s", backend.name, exc)
            return ToolOffer(note=f"the tools' tokens could not be counted ({exc})")
        return ToolOffer(on, tokens, problem, forced, problem is None)

    async def run(
        self,
        ctx: TurnSource,
        call: ToolCall,
        offered: Sequence[ToolSpec],
        notify: Notify | None = None,
    ) -> ToolResult:
        """Run one call within its bounds (see the module's docstring); never raises for the
        tool's faults. notify shows a line in the reply (the confirmation question)."""
        started = time.perf_counter()

        def result(text: str, error: bool = False) -> ToolResult:
            return ToolResult(call.id, call.name, self._cut(text), error,
                              time.perf_counter() - started)  # fmt: skip

        spec = next((s for s in offered if s.name == call.name), None)
        if spec is None:
            names = ", ".join(s.name for s in offered) or "none"
            return result(f"there is no tool {call.name!r} here; the tools are: {names}", True)
        local = None if spec.source.startswith("mcp:") else self._local().get(spec.name)
        try:
            arguments = call.parsed()
            values = self._validate(spec, local[1] if local else None, arguments)
        except ToolCallError as exc:
            return result(str(exc), True)
        wait = self._limiter.check(f"{ctx.chat.id}:{spec.name}")
        if wait:
            return result(
                f"{spec.name} was called more than {self.config.per_minute} times a minute in "
                f"this chat; it may be called again in {wait:.0f} s",
                True,
            )
        if spec.confirm:
            refused = await self._confirm(ctx, spec, notify)
            if refused is not None:
                return result(refused, True)
        try:
            async with asyncio.timeout(self.config.timeout):
                if local is not None:
                    text = await self._run_command(ctx, local[1], values)
                    return result(text or "(the tool returned nothing)")
                assert self.mcp is not None
                found = await self.mcp.call(spec.name, values, self.config.timeout)
                return result(found.content, found.is_error)
        except TimeoutError:
            return result(
                f"{spec.name} did not finish within {self.config.timeout:g} s and was stopped",
                True,
            )
        except CommandError as exc:
            return result(str(exc), True)
        except Exception as exc:
            log.exception("tool %s failed in %s", spec.name, ctx.chat.key)
            return result(f"{spec.name} failed: {type(exc).__name__}: {exc}", True)

    def _validate(
        self, spec: ToolSpec, command: Command | None, arguments: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The arguments checked against the tool's declaration (ToolCallError if not)."""
        if command is not None:
            try:
                return command.check(arguments)
            except CommandError as exc:
                raise ToolCallError(str(exc)) from None
        try:
            jsonschema.validate(arguments, spec.parameters)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "the arguments"
            raise ToolCallError(f"{spec.name}: {where}: {exc.message}") from None
        except jsonschema.SchemaError as exc:
            raise ToolCallError(f"{spec.name} declares an invalid schema: {exc.message}") from None
        return dict(arguments)

    async def _confirm(self, ctx: TurnSource, spec: ToolSpec, notify: Notify | None) -> str | None:
        """None once confirmed; otherwise why the call does not run."""
        wait = self.config.confirm_timeout
        if notify is not None:
            await notify(f" — needs your confirmation: /confirm or /deny (within {wait:g} s)")
        user = ctx.incoming.user.id
        answer = await self.confirmations.ask(ctx.chat.id, user, spec.name, wait)
        if answer is None:
            return f"nobody confirmed {spec.name} within {wait:g} s, so it did not run"
        return None if answer else f"the user denied running {spec.name}"

    def _cut(self, text: str) -> str:
        limit = self.config.max_result_chars
        if len(text) <= limit:
            return text
        return f"{text[:limit]}\n[cut: the result had {len(text):,} characters; {limit:,} kept]"
