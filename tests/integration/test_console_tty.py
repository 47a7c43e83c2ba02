"""The interactive console, driven through a pseudo-terminal as a person would use it."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_cli import write_config


class Terminal:
    """A child process on a pseudo-terminal, with expect-style reads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self.screen = ""

    def expect(self, marker: str, timeout: float = 60.0) -> str:
        """Read until marker appears after what was read before; return the text up to it."""
        deadline = time.monotonic() + timeout
        while marker not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{marker!r} never appeared; screen:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode("utf-8", "replace")
                except OSError:  # the child closed the terminal
                    break
        before, _, self.screen = self.screen.partition(marker)
        return before

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


def test_stream_interrupt_and_quit_in_a_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    term = Terminal([sys.executable, "-m", "botkit", "chat", "--config", str(config)], tmp_path)
    try:
        assert "/help lists commands" in term.expect("you> ")
        term.type("/maxtokens 200\n")
        assert "max_tokens set to 200" in term.expect("you> ")
        term.type("Tell me a long story about a dragon and a knight.\n")
        term.expect("bot> ")
        term.expect(" ")  # the reply has started streaming
        term.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert "[interrupted]" in term.expect("you> ")
        term.type("/context\n")
        assert "(2 messages)" in term.expect("you> ")
        term.type("\x04")  # Ctrl-D: end of input
    finally:
        code = term.close()
    assert code == 0
