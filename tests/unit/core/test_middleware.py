"""The router's middleware around command handlers, on a Router built without a Bot: the
chain runs in order, a refusal stops it, and a middleware that fails becomes a clear reply."""

from __future__ import annotations

from typing import Any

import pytest

from botkit.adapters.memory import MemoryTarget
from botkit.backends.scripted import ScriptedBackend
from botkit.config import Config
from botkit.core.commands import Command, CommandError, CommandRegistry, Plugin
from botkit.core.context import Context, Services
from botkit.core.conversation import Conversation
from botkit.core.events import ChatKey, Incoming, User
from botkit.core.middleware import CallNext, RateLimit, require_permission
from botkit.core.router import Router
from botkit.core.scheduler import FairScheduler
from botkit.core.settings import ChatSettings
from botkit.core.sight import Sight
from botkit.retrieval.library import Library
from botkit.retrieval.service import Retrieval
from botkit.store.repository import Repository
from botkit.tools.registry import ToolRegistry

plugin = Plugin("probe", help="commands for the middleware tests", internal=True)
ran: list[str] = []


@plugin.command("echo")
async def echo(ctx: Context, text: str = "") -> str:
    """Echo text."""
    ran.append("handler")
    return f"echo {text}"


@plugin.command("busy", uses_model=True)
async def busy(ctx: Context) -> str:
    """Pretend to use the model."""
    return "done"


@plugin.command("setit", changes_settings=True)
async def setit(ctx: Context, value: int | None = None) -> str:
    """Show or set a value."""
    return "shown" if value is None else f"set {value}"


@plugin.command("broken")
async def broken(ctx: Context) -> str:
    """A handler with a bug."""
    raise KeyError("oops")


@pytest.fixture
def router(repo: Repository) -> Router:
    ran.clear()
    backend = ScriptedBackend("local")
    defaults = ChatSettings(backend="local")
    commands = CommandRegistry()
    commands.add_plugin(plugin)
    scheduler = FairScheduler()
    conversation = Conversation({"local": backend}, lambda: repo, scheduler, defaults=defaults)
    config = Config()
    retrieval = Retrieval(config.memory, config.knowledge, config.retrieval, None)
    services = Services(
        store=lambda: repo, conversation=conversation, scheduler=scheduler,
        backends={"local": backend}, backend_configs=config.backends, defaults=defaults,
        commands=commands, plugins=config.plugins, count_request=lambda _: None,
        hide_internals=lambda text: text, retrieval=retrieval,
        library=Library(config.knowledge, retrieval, lambda: repo),
        tools=ToolRegistry(config.tools, commands, lambda *call: routed.run_tool(*call)),
        sight=Sight(config.vision, {"local": backend}, lambda: repo, scheduler),
    )  # fmt: skip
    routed = Router(services)
    return routed


async def send(router: Router, text: str, *, may_change: bool = True) -> str:
    target = MemoryTarget()
    user = User("u1", "alice", can_change_settings=may_change, trusted=True)
    incoming = Incoming(chat=ChatKey("test", "a"), user=user, text=text, is_dm=True)
    await router.handle(incoming, target)
    return target.text


def recording(name: str) -> Any:
    async def middleware(
        ctx: Context, command: Command, values: dict[str, Any], call_next: CallNext
    ) -> str | None:
        ran.append(f"{name} before /{command.name} {values}")
        result = await call_next(ctx, values)
        ran.append(f"{name} after: {result}")
        return result

    return middleware


async def test_middleware_runs_in_the_order_registered_around_the_handler(router: Router) -> None:
    router.use(recording("outer"))
    router.use(recording("inner"))
    assert await send(router, "/echo hi") == "echo hi"
    assert ran == [
        "outer before /echo {'text': 'hi'}",
        "inner before /echo {'text': 'hi'}",
        "handler",
        "inner after: echo hi",
        "outer after: echo hi",
    ]


async def test_a_refusal_stops_the_chain_and_is_the_reply(router: Router) -> None:
    async def refuse(
        ctx: Context, command: Command, values: dict[str, Any], call_next: CallNext
    ) -> str | None:
        raise CommandError(f"not now, /{command.name}")

    router.use(refuse)
    router.use(recording("after the refusal"))
    assert await send(router, "/echo hi") == "⚠ not now, /echo"
    assert ran == []  # neither the later middleware nor the handler ran


async def test_a_middleware_that_fails_is_a_clear_reply_naming_it(router: Router) -> None:
    async def quota(
        ctx: Context, command: Command, values: dict[str, Any], call_next: CallNext
    ) -> str | None:
        if command.name == "echo":
            raise RuntimeError("the quota table is gone")
        return await call_next(ctx, values)

    router.use(quota)
    answer = await send(router, "/echo hi")
    assert answer == (
        "⚠ /echo did not run: the bot's quota check failed (RuntimeError); the error is in "
        "the bot's log"
    )
    assert ran == []
    # A handler's own bug, raised through the middleware, is not the middleware's.
    broken = await send(router, "/broken")
    assert broken == "⚠ Something went wrong on our side; the error is in the bot's log."


async def test_permission_guards_changes_not_the_showing(router: Router) -> None:
    router.use(require_permission)
    assert await send(router, "/setit", may_change=False) == "shown"
    denied = await send(router, "/setit 3", may_change=False)
    assert denied == "⚠ only people allowed to change this chat's settings can use /setit"
    assert await send(router, "/setit 3") == "set 3"


async def test_the_rate_limit_counts_only_commands_that_use_the_model(router: Router) -> None:
    router.use(RateLimit(per_minute=2))
    for _ in range(3):
        assert await send(router, "/echo") == "echo "
    assert await send(router, "/busy") == "done"
    assert await send(router, "/busy") == "done"
    refused = await send(router, "/busy")
    assert refused.startswith("⚠ you are sending messages faster than 2 a minute; try again in")
