"""The Bot: builds the scheduler, conversation, command registry and router, each given what it
uses, and owns what lives as long as the process (the store, its lease, the backends)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from botkit.backends.base import Backend, BackendError, Health, ModelNotFound
from botkit.backends.model_files import bundled_model_path
from botkit.config import Config
from botkit.core.commands import CommandRegistry
from botkit.core.context import Services
from botkit.core.conversation import Conversation
from botkit.core.middleware import RateLimit, require_permission
from botkit.core.router import Router
from botkit.core.scheduler import FairScheduler
from botkit.core.settings import ChatSettings
from botkit.core.sight import Sight
from botkit.metrics import Metrics
from botkit.retrieval.embedder import Embedder
from botkit.retrieval.library import Library
from botkit.retrieval.service import Retrieval
from botkit.store.db import create_engine, ensure_migrated
from botkit.store.leases import Lease, LeaseLost
from botkit.store.repository import ChatRecord, Repository
from botkit.tools.registry import McpSource, ToolRegistry

__all__ = ["Bot"]

log = logging.getLogger(__name__)


def _internals(config: Config) -> list[tuple[str, str]]:
    """What untrusted users must not see, longest first (a path may contain another)."""
    found: dict[str, str] = {}
    for backend in config.backends.values():
        for address in (getattr(backend, "host", None), getattr(backend, "base_url", None)):
            if address:
                found[str(address).rstrip("/")] = "the model server"
        for key in ("model_path", "lora_path"):
            path = getattr(backend, key, None)
            if path is not None:
                for form in {str(path), str(Path(path).resolve())}:
                    found[form] = Path(path).name
    with contextlib.suppress(ModelNotFound):
        bundled = bundled_model_path()
        found[str(bundled)] = bundled.name
    return sorted(found.items(), key=lambda item: -len(item[0]))


class Bot:
    """A running botkit: start() it (or `async with`), hand messages to .router, close() it.

    Built by botkit.compose.build_bot, which chooses the backends and registers the commands;
    the core knows neither the backend classes nor any plugin.
    """

    def __init__(
        self,
        config: Config,
        *,
        backends: dict[str, Backend],
        base_dir: Path | None = None,
        embedder: Embedder | None = None,
        mcp: McpSource | None = None,
    ) -> None:
        """embedder: retrieval's (None: keywords only); mcp: the MCP servers' tools."""
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.defaults = config.defaults
        self.backends = backends
        self.scheduler = FairScheduler()
        self.registry = CommandRegistry()
        self.metrics = Metrics()
        self.retrieval = Retrieval(
            config.memory, config.knowledge, config.retrieval, embedder
        )  # fmt: skip
        self.library = Library(config.knowledge, self.retrieval, lambda: self.repo)
        self.mcp = mcp
        self.tools = ToolRegistry(
            config.tools, self.registry,
            lambda ctx, command, values: self.router.run_tool(ctx, command, values), mcp,
        )  # fmt: skip
        self.conversation = Conversation(
            backends, lambda: self.repo, self.scheduler,
            defaults=config.defaults, history=config.history, metrics=self.metrics,
            max_queue=config.service.max_queue,
            checkpoint_interval=config.storage.checkpoint_interval, retrieval=self.retrieval,
            tools=self.tools, vision=config.vision,
        )  # fmt: skip
        self.sight = Sight(config.vision, backends, lambda: self.repo, self.scheduler)
        rate_limit = RateLimit(config.service.rate_limit_per_minute)
        services = Services(
            store=lambda: self.repo, conversation=self.conversation, scheduler=self.scheduler,
            backends=backends, backend_configs=config.backends, defaults=config.defaults,
            commands=self.registry, plugins=config.plugins, count_request=rate_limit.count,
            hide_internals=self.hide_internals, retrieval=self.retrieval, library=self.library,
            tools=self.tools, sight=self.sight,
        )  # fmt: skip
        self.router = Router(services, metrics=self.metrics)
        self.router.use(require_permission)
        self.router.use(rate_limit)
        self.plugin_errors: list[str] = []
        self._engine: AsyncEngine | None = None
        self._repo: Repository | None = None
        self._lease: Lease | None = None
        self._keeper: asyncio.Task[None] | None = None
        # Set if another process took this one's lease (its heartbeat stopped for too long):
        # the service then stops, so that systemd starts it afresh.
        self.lease_lost: LeaseLost | None = None
        self.lease_lost_event = asyncio.Event()
        self._internals = _internals(config)

    def hide_internals(self, text: str) -> str:
        """text without model server addresses and file paths (for untrusted users): a path
        becomes its file name, an address "the model server"."""
        for secret, shown in self._internals:
            text = text.replace(secret, shown)
        return text

    @property
    def repo(self) -> Repository:
        """The store (available once started)."""
        if self._repo is None:
            raise RuntimeError("Bot.start() has not been called")
        return self._repo

    async def __aenter__(self) -> Bot:
        try:
            await self.start()
        except BaseException:
            await self.close()  # what did start is released
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store (checking migrations) and start the backends. (The commands are
        registered by whoever builds the bot: botkit.compose.build_bot.)"""
        engine = create_engine(self.config.storage.url)
        self._engine = engine
        if await ensure_migrated(engine, auto_migrate_new=self.config.storage.auto_migrate_new):
            log.info("created a new database at %s", engine.url.render_as_string())
        self._repo = Repository(engine)
        service = self.config.service
        # Before the model loads: a name in use is refused at once, and the heartbeat goes on
        # while the model loads.
        self._lease, _ = await Lease.acquire(
            self._repo, service.instance,
            interval=service.heartbeat_interval, stale_after=service.heartbeat_timeout,
        )  # fmt: skip
        self._repo.owner = self._lease.id
        self._keeper = asyncio.create_task(self._keep_lease(self._lease))
        for name, backend in self.backends.items():
            try:
                await backend.start()
            except BackendError as exc:  # the same kind (a transient one exits 1, not 2)
                raise type(exc)(f"backend {name!r} did not start: {exc}") from exc
        await self.retrieval.start(self._repo)
        if self.mcp is not None:
            await self.mcp.start()  # each server connects in the background

    async def _keep_lease(self, lease: Lease) -> None:
        try:
            await lease.keep()
        except LeaseLost as exc:
            log.error("%s", exc)
            self.lease_lost = exc
            self.lease_lost_event.set()

    async def close(self) -> None:
        """Release backends, the lease (replies still generating then count as cut) and the
        database."""
        try:
            await self.retrieval.close()
        except Exception:
            log.exception("closing retrieval failed")
        if self.mcp is not None:
            try:
                await self.mcp.close()
            except Exception:
                log.exception("closing the MCP servers failed")
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                log.exception("closing backend %s failed", backend.name)
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._lease is not None and self.lease_lost is None:
            try:
                await self._lease.release()
            except Exception:  # the database gone: the lease times out instead
                log.exception("releasing this process's lease failed")
        if self._repo is not None:
            await self._repo.close()
        if self._engine is not None:
            await self._engine.dispose()

    def failure(self) -> str | None:
        """Why a backend can no longer generate (the service then stops pinging systemd's
        watchdog); None while every backend can."""
        for backend in self.backends.values():
            if isinstance(backend, Health) and backend.failure is not None:
                return f"backend {backend.name}: {backend.failure}"
        return None

    def settings_for(self, chat: ChatRecord) -> ChatSettings:
        """A chat's effective settings: its overrides over the config defaults."""
        return self.conversation.settings_for(chat)
