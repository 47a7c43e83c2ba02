"""What a turn needs of the message that asks for it: the Conversation's view of a Context.

A Protocol, so that the conversation knows nothing of the command Context (which holds the
conversation itself) and a test can hand it any object with these parts.
"""

from __future__ import annotations

from typing import Protocol

from botkit.backends.base import Backend
from botkit.core.events import Incoming
from botkit.core.settings import ChatSettings
from botkit.core.streaming import ReplyTarget
from botkit.store.records import ChatRecord

__all__ = ["TurnSource"]


class TurnSource(Protocol):
    """What a turn needs of the message that asks for it (a command's Context is one)."""

    @property
    def incoming(self) -> Incoming:
        """The message."""

    @property
    def chat(self) -> ChatRecord:
        """Its chat, as loaded when the message came."""

    @property
    def settings(self) -> ChatSettings:
        """The chat's effective settings then."""

    @property
    def target(self) -> ReplyTarget:
        """Where the reply goes."""

    @property
    def backend(self) -> Backend:
        """The chat's backend."""

    def accepted(self) -> None:
        """The message is committed to the store: the platform may confirm it."""
