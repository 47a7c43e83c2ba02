"""The Context a command handler receives: the message, the chat, its settings, a way to reply,
and, named one by one, the parts of the bot that botkit's own commands use (Services)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botkit.backends.base import Backend
from botkit.config import BackendConfig, PluginsConfig
from botkit.core.commands import CommandRegistry
from botkit.core.conversation import Conversation
from botkit.core.events import Incoming
from botkit.core.planner import Planner
from botkit.core.scheduler import FairScheduler
from botkit.core.settings import ChatSettings
from botkit.core.sight import Sight
from botkit.core.streaming import ReplyStream, ReplyTarget
from botkit.retrieval.library import Library
from botkit.retrieval.service import Retrieval
from botkit.store.repository import ChatRecord, Repository
from botkit.tools.registry import ToolRegistry

__all__ = ["Context", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """What botkit's own commands use beyond the message, built once by the Bot and shared by
    every Context. (A plugin's PluginContext offers a narrow part of it.)"""

    store: Callable[[], Repository]  # the repository, once the bot has started
    conversation: Conversation
    scheduler: FairScheduler
    backends: Mapping[str, Backend]
    backend_configs: Mapping[str, BackendConfig]  # what /model lists
    defaults: ChatSettings  # the config's [defaults]
    commands: CommandRegistry
    plugins: PluginsConfig  # the plugins' data quota
    # Count a request against its sender's rate limit (raises CommandError when over).
    count_request: Callable[[Incoming], None]
    # Text without model server addresses and file paths (for untrusted users).
    hide_internals: Callable[[str], str]
    retrieval: Retrieval  # memory and knowledge: search, budgets, /sources
    library: Library  # the chats' documents
    tools: ToolRegistry  # what the model may call (/tools)
    sight: Sight  # pictures: read, checked, seen or described


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a handler may use; the one argument every command gets first."""

    incoming: Incoming
    chat: ChatRecord
    settings: ChatSettings
    target: ReplyTarget
    services: Services
    # Called once the message is safely stored: a platform may confirm delivery only then.
    on_accepted: Callable[[], None] | None = None

    @property
    def backend(self) -> Backend:
        """The backend this chat uses."""
        return self.services.backends[self.settings.backend]

    @property
    def backends(self) -> Mapping[str, Backend]:
        """Every configured backend, by name."""
        return self.services.backends

    @property
    def retrieval(self) -> Retrieval:
        """Memory and knowledge: what a message recalls, /sources, /embed."""
        return self.services.retrieval

    @property
    def library(self) -> Library:
        """The chats' documents: add, list, remove."""
        return self.services.library

    @property
    def store(self) -> Repository:
        """The store."""
        return self.services.store()

    @property
    def conversation(self) -> Conversation:
        """The turns: respond, regenerate, cancel."""
        return self.services.conversation

    @property
    def planner(self) -> Planner:
        """The prompt planner: the window, the fixed cost, the kept history."""
        return self.services.conversation.planner

    @property
    def scheduler(self) -> FairScheduler:
        """The backends' slots, handed out fairly."""
        return self.services.scheduler

    @property
    def defaults(self) -> ChatSettings:
        """The settings a chat has where it overrides none."""
        return self.services.defaults

    @property
    def commands(self) -> CommandRegistry:
        """Every registered command."""
        return self.services.commands

    def accepted(self) -> None:
        """The message is committed to the store (or needs no storing)."""
        if self.on_accepted is not None:
            self.on_accepted()

    def _shown(self, text: str) -> str:
        """text as this user may see it: internals hidden unless they are trusted."""
        return text if self.incoming.user.trusted else self.services.hide_internals(text)

    async def reply(self, text: str) -> None:
        """Send text to the chat (split at the platform's limit)."""
        stream = ReplyStream(self.target)
        await stream.finish(self._shown(text))

    async def reply_image(self, png: bytes, text: str) -> None:
        """Send a picture with its text where the platform can show one, else just the text."""
        await self.target.send_image(png, self._shown(text))

    async def reply_error(self, text: str) -> None:
        """Tell the user what went wrong: privately where the platform can (Discord)."""
        await self.target.send_error(self._shown(f"⚠ {text}"))
