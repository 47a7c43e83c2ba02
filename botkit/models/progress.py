"""Download progress where the user sees it: a bar on a terminal, lines and STATUS= elsewhere;
and the way to stop a pull between two blocks.

On a terminal huggingface_hub draws its own tqdm bar. Anywhere else (a pipe, a log, journald) a
bar is noise, so a line is printed at every 10 %; under systemd each whole percent also goes to
`STATUS=` (what `systemctl status` shows) with `EXTEND_TIMEOUT_USEC=`, because a first start
that downloads a model (or checks the sha256 of a big one) would otherwise pass the unit's
start timeout (TimeoutStartSec, 90 s by default; sd_notify(3): EXTEND_TIMEOUT_USEC, systemd
236 and later).

A pull runs on a thread that nothing can interrupt, so `stop()` asks it to end: the next block
downloaded or hashed raises PullStopped, and huggingface_hub deletes its partial file on the
way out (file_download.py, _download_to_tmp_and_move).
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from botkit.models.files import human_size
from botkit.models.spec import ModelError
from botkit.systemd import Notifier

__all__ = ["PullProgress", "PullStopped"]

if TYPE_CHECKING:
    _Bar = tqdm[Any]
else:  # tqdm is generic in its stubs only
    _Bar = tqdm

_EXTEND_USEC = 60_000_000  # each sign of progress buys the start another minute


class PullStopped(ModelError):
    """The pull was asked to stop (SIGTERM, Ctrl-C); its partial file is gone."""


class PullProgress:
    """Reports a pull: messages, and a progress class for huggingface_hub's downloads."""

    def __init__(
        self,
        stream: TextIO | None = None,
        notifier: Notifier | None = None,
        *,
        tty: bool | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._notifier = notifier if notifier is not None else Notifier()
        self.tty = self._stream.isatty() if tty is None else tty
        self._stop = threading.Event()
        self._checked = -1

    def message(self, text: str) -> None:
        """A line for the user (and systemd's status)."""
        print(text, file=self._stream, flush=True)
        self._status(text)

    def _status(self, text: str) -> None:
        if self._notifier.enabled:
            self._notifier.notify(f"STATUS={text}", f"EXTEND_TIMEOUT_USEC={_EXTEND_USEC}")

    def stop(self) -> None:
        """Ask the pull to end at its next block (from any thread)."""
        self._stop.set()

    def check(self) -> None:
        """Raise PullStopped if the pull was asked to stop."""
        if self._stop.is_set():
            raise PullStopped("the pull was stopped; its partial file was removed")

    def checking(self, label: str, done: int, total: int) -> None:
        """Called as a file is hashed: STATUS= (and a longer start timeout) every 10 %."""
        percent = done * 100 // total if total else 100
        if percent // 10 != self._checked // 10 or done == total:
            self._checked = percent
            self._status(f"checking the sha256 of {label}: {percent}%")

    def bar_class(self, label: str) -> type[tqdm[Any]]:
        """The tqdm class to hand hf_hub_download: on a terminal huggingface_hub's own bar,
        elsewhere one that prints percentage lines and sends STATUS=; both end the download
        when the pull is asked to stop."""
        progress = self
        if self.tty and not self._notifier.enabled:
            from huggingface_hub.utils.tqdm import tqdm as hf_tqdm

            class StoppableBar(hf_tqdm):
                def update(self, n: float | None = 1) -> bool | None:
                    progress.check()
                    return super().update(n)

            return StoppableBar

        class LineProgress(_Bar):
            # huggingface_hub builds it with total/initial/desc/unit (utils/tqdm.py
            # _create_progress_bar: a class that is not its own tqdm gets no `disable`).
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True  # tqdm draws nothing; update() reports instead
                super().__init__(*args, **kwargs)
                self.done = int(kwargs.get("initial") or 0)
                self.last_line = -1
                self.last_status = -1

            def update(self, n: float | None = 1) -> bool | None:
                progress.check()
                self.done += int(n or 0)
                if self.total:
                    progress.advance(self, label, self.done, int(self.total))
                return super().update(n)

        return LineProgress

    def advance(self, bar: Any, label: str, done: int, total: int) -> None:
        """Called by the line progress class as bytes arrive."""
        percent = min(100, done * 100 // total)
        if percent // 10 != bar.last_line // 10 or bar.last_line < 0:
            bar.last_line = percent
            print(
                f"{label}: {percent}% ({human_size(done)} of {human_size(total)})",
                file=self._stream,
                flush=True,
            )
        if percent != bar.last_status:
            bar.last_status = percent
            self._status(f"downloading {label}: {percent}%")
