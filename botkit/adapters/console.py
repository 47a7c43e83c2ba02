"""The console adapter: chat with the bot in a terminal, or pipe lines through it.

Interactive (stdin is a terminal): a prompt, replies streamed as they are generated, Ctrl-C
stops the reply being generated (it is stored marked interrupted), Ctrl-C at the prompt or
Ctrl-D quits. Piped: one line per message, each reply printed, exit at end of input.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from botkit.core.events import ChatKey, Incoming, User
from botkit.core.router import Router
from botkit.core.streaming import INTERRUPTED_MARK, TextTarget

__all__ = ["ConsoleAdapter", "ConsoleTarget"]

# The longest input line read as one message; the router refuses messages far shorter than
# this with a clear reply, so only absurd lines are dropped here.
_LINE_LIMIT = 1024 * 1024


class ConsoleTarget(TextTarget):
    """Writes replies to a text stream; an edit prints only what was appended."""

    max_length = 1_000_000_000
    min_edit_interval = 0.0

    def __init__(self, out: TextIO, prefix: str = "") -> None:
        self.out = out
        self.prefix = prefix
        self.line_open = False

    async def send(self, text: str) -> list[str]:
        """Print a new message; the handle remembers what of it is on screen."""
        self.end_line()
        self.out.write(self.prefix + text)
        self.out.flush()
        self.line_open = True
        return [text]

    async def edit(self, handle: list[str], text: str) -> None:
        """Print what text adds to what is shown; a text that replaces it goes on a new line."""
        shown = handle[0]
        self.out.write(text[len(shown) :] if text.startswith(shown) else "\n" + self.prefix + text)
        self.out.flush()
        handle[0] = text

    def end_line(self) -> None:
        """Finish the current reply's line."""
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False


class ConsoleAdapter:
    """Reads messages from stdin, one per line, for one named chat."""

    name = "console"

    def __init__(
        self,
        chat: str = "console",
        user_name: str = "you",
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.chat = ChatKey("console", chat)
        self.user = User(id="console", name=user_name, trusted=True)  # the owner, at the host
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty()
        self.target = ConsoleTarget(self.stdout, prefix="bot> " if self.interactive else "")
        self._current: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    async def _lines(self) -> AsyncIterator[bytes | None]:
        """Raw input lines; None for a line longer than the reader takes (it is refused)."""
        loop = asyncio.get_running_loop()
        mode = os.fstat(self.stdin.fileno()).st_mode
        if stat.S_ISREG(mode):  # a redirected file never blocks
            for line in getattr(self.stdin, "buffer", self.stdin):
                yield line if isinstance(line, bytes) else line.encode("utf-8")
            return
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self.stdin
        )
        try:
            while not self._stopping.is_set():
                stop = asyncio.ensure_future(self._stopping.wait())
                read = asyncio.ensure_future(reader.readline())
                await asyncio.wait({stop, read}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not read.done():
                    read.cancel()
                    return
                try:
                    data = read.result()
                except ValueError:  # longer than _LINE_LIMIT: the reader dropped it
                    yield None
                    continue
                if not data:
                    return
                yield data
        finally:
            transport.close()

    def _on_interrupt(self) -> None:
        if self._current is not None and not self._current.done():
            self._current.cancel()
        else:
            self._stopping.set()

    async def start(self, router: Router) -> None:
        """Run until end of input (or Ctrl-C at the prompt)."""
        self.ready.set()
        loop = asyncio.get_running_loop()
        # Signal handlers can only be installed from the main thread.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        try:
            await self._loop(router)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    async def _loop(self, router: Router) -> None:
        self._prompt()
        async for raw in self._lines():
            text = self._decode(raw)
            if text is not None and text.strip():
                incoming = Incoming(chat=self.chat, user=self.user, text=text, is_dm=True)
                self._current = asyncio.create_task(router.handle(incoming, self.target))
                try:
                    await self._current
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # we are being cancelled, not just the reply
                    self.target.out.write(INTERRUPTED_MARK)
                    self.target.line_open = True
                finally:
                    self._current = None
                self.target.end_line()
            self._prompt()
        if self.interactive:
            self.stdout.write("\n")

    def _decode(self, raw: bytes | None) -> str | None:
        """The line's text, or None after telling the user why it cannot be a message."""
        problem = None
        if raw is None:
            problem = f"that line is longer than {_LINE_LIMIT:,} bytes; nothing was sent"
        else:
            try:
                return raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                problem = (
                    f"that line is not valid UTF-8 (byte {exc.start + 1}); nothing was sent. "
                    "Send text in UTF-8"
                )
        self.target.end_line()
        self.stdout.write(f"⚠ {problem}\n")
        self.stdout.flush()
        return None

    def _prompt(self) -> None:
        if self.interactive:
            self.stdout.write(f"{self.user.name}> ")
            self.stdout.flush()

    async def stop_taking(self) -> None:
        """Lines typed from now on are answered "restarting" by the router."""

    async def stop(self) -> None:
        """Stop after the current message."""
        self._stopping.set()
