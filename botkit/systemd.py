"""systemd integration without a dependency: sd_notify over $NOTIFY_SOCKET, and the watchdog.

With `Type=notify` systemd waits for READY=1; with `WatchdogSec=` it expects WATCHDOG=1 at
least that often and restarts a service whose event loop has hung (the pings come from the
loop itself, so a blocked loop stops them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; does nothing when not started by systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with "@" is in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2 / 1e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return bool(self._address)

    def notify(self, *fields: str) -> None:
        """Send fields such as "READY=1" or "STATUS=…" (newline-separated, one datagram)."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the event loop: if the manager's queue is full, drop this one.
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), self._address)
        except BlockingIOError:
            log.debug("sd_notify: the notify socket is full; dropped %s", fields)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)

    async def watchdog(self, failure: Callable[[], str | None] = lambda: None) -> None:
        """Ping WATCHDOG=1 at half the interval systemd asked for, until cancelled or until
        failure() names a reason: a process that can no longer answer must be restarted, and
        a loop that still pings would hide it."""
        if self.watchdog_interval is None:
            return
        while (reason := failure()) is None:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
        log.critical("watchdog pings stopped, so systemd restarts the service: %s", reason)
        self.notify(f"STATUS=failed: {reason}")
