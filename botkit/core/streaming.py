"""Delivering a streamed reply: paced edits, and splitting at the platform's length limit.

The splitter never truncates, prefers line and word boundaries, and keeps code fences
balanced in every piece (closing a fence at the end of a piece and reopening it, with its
language, at the start of the next).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "INTERRUPTED_MARK",
    "RecoverableTarget",
    "ReplyStream",
    "ReplyTarget",
    "TextTarget",
    "interrupted_ending",
    "split_message",
]

log = logging.getLogger(__name__)

_FENCE = "```"
_CLOSE = "\n```"
_MIN_LIMIT = 32

INTERRUPTED_MARK = " [interrupted]"


class ReplyTarget(Protocol):
    """Where a reply goes: a platform message that can be sent and then edited."""

    @property
    def max_length(self) -> int:
        """The platform's longest message, in characters."""
        ...

    @property
    def min_edit_interval(self) -> float:
        """Seconds to leave between two edits of this chat's messages."""
        ...

    async def send(self, text: str) -> Any:
        """Send a new message; returns a handle for edits."""
        ...

    async def edit(self, handle: Any, text: str) -> None:
        """Replace the text of a message sent earlier."""
        ...

    async def send_image(self, png: bytes, text: str) -> None:
        """Send a PNG with its text (TextTarget: the text alone)."""
        ...

    async def send_error(self, text: str) -> None:
        """Tell the user what went wrong (TextTarget: as a message; Discord: privately)."""
        ...


class TextTarget:
    """The base of a target: what a platform cannot do specially falls back to text."""

    async def send_image(self, png: bytes, text: str) -> None:
        """No images here: the text, as messages."""
        await ReplyStream(self).finish(text)  # type: ignore[arg-type]  # subclasses complete it

    async def send_error(self, text: str) -> None:
        """An error is a message like any other."""
        await ReplyStream(self).finish(text)  # type: ignore[arg-type]


@runtime_checkable
class RecoverableTarget(Protocol):
    """A target whose messages can be found again after a restart (to mark a cut reply)."""

    def reference(self, handle: Any) -> str | None:
        """A string that names the message of handle on this platform, kept with the reply."""
        ...


def _open_fence(text: str) -> str | None:
    """The info string of a code fence still open at the end of text, or None."""
    info: str | None = None
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(_FENCE):
            info = None if info is not None else stripped[3:].strip()[:20]
    return info


def _cut_point(text: str, room: int) -> int:
    """Where to cut text so the head fits room: a line end, else a space, else hard."""
    floor = room // 2
    newline = text.rfind("\n", floor, room)
    if newline != -1:
        return newline + 1
    space = text.rfind(" ", floor, room)
    if space != -1:
        return space + 1
    return room


def split_message(text: str, limit: int) -> list[str]:
    """Split text into pieces of at most limit characters, without losing any text."""
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT} characters")
    pieces: list[str] = []
    reopen = ""
    rest = text
    while len(reopen) + len(rest) > limit:
        room = limit - len(reopen) - len(_CLOSE) - 1
        cut = _cut_point(rest, room)
        piece = reopen + rest[:cut]
        rest = rest[cut:]
        info = _open_fence(piece)
        if info is not None:
            piece += _CLOSE[1:] if piece.endswith("\n") else _CLOSE
            reopen = f"{_FENCE}{info}\n"
        else:
            reopen = ""
        pieces.append(piece)
    pieces.append(reopen + rest)
    return pieces


def interrupted_ending(text: str, limit: int) -> str:
    """The last message of a cut reply of text, ending with the interrupted mark."""
    return split_message(text, limit - len(INTERRUPTED_MARK))[-1].rstrip() + INTERRUPTED_MARK


class ReplyStream:
    """Grows a reply on a target: edits no more often than the target allows, splits as needed.

    A platform that refuses an edit or a send (a deleted message, a lost permission, a network
    error) does not end the reply: the text goes on in a new message, from what was last shown
    in full. After a few refusals in a row the reply is no longer shown; the caller still has
    all of it in .text and stores it.
    """

    _GIVE_UP = 3

    def __init__(self, target: ReplyTarget, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self._clock = clock
        self._text = ""
        self._offset = 0  # text before this is in messages that are no longer edited
        self._shown_upto = 0  # text up to here was shown in full by the last flush
        self._handles: list[Any] = []
        self._shown: list[str] = []
        self._last_flush = float("-inf")
        self._refusals = 0

    @property
    def text(self) -> str:
        """Everything appended so far."""
        return self._text

    @property
    def last_handle(self) -> Any:
        """The handle of the message the reply's end is in (None before the first send)."""
        return self._handles[-1] if self._handles else None

    async def status(self, text: str) -> None:
        """Show a note (e.g. the place in the queue) that the reply will replace."""
        try:
            if self._handles:
                await self.target.edit(self._handles[0], text)
                self._shown[0] = text
            else:
                self._handles.append(await self.target.send(text))
                self._shown.append(text)
        except Exception as exc:
            log.warning("the platform refused a status note: %s", exc)

    async def append(self, text: str) -> None:
        """Add streamed text; shows it now if the pacing interval has passed."""
        self._text += text
        if self._clock() - self._last_flush >= self.target.min_edit_interval:
            await self._flush()

    async def flush(self) -> None:
        """Show what was appended now, whatever the pacing (a tool call waiting on the user)."""
        await self._flush()

    async def finish(self, suffix: str = "") -> None:
        """Show the whole reply (plus an optional note, e.g. "[interrupted]")."""
        self._text += suffix
        if not self._text.strip():
            self._text = "(the model returned an empty reply)"
        await self._flush()

    async def _flush(self) -> None:
        # A refusal moves the rest to a new message at once (up to _GIVE_UP times in a row),
        # so text appended last is never left unshown.
        while self._refusals < self._GIVE_UP and self._text[self._offset :].strip():
            self._last_flush = self._clock()
            try:
                await self._show(self._text[self._offset :])
            except Exception as exc:
                self._refusals += 1
                log.warning(
                    "the platform refused a reply update (%s); the reply goes on in a new message",
                    exc,
                )
                self._offset = self._shown_upto
                self._handles.clear()
                self._shown.clear()
                continue
            self._refusals = 0
            self._shown_upto = len(self._text)
            return

    async def _show(self, rest: str) -> None:
        for index, piece in enumerate(split_message(rest, self.target.max_length)):
            if index < len(self._handles):
                if self._shown[index] != piece:
                    await self.target.edit(self._handles[index], piece)
                    self._shown[index] = piece
            else:
                self._handles.append(await self.target.send(piece))
                self._shown.append(piece)
