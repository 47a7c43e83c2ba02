"""What this machine has: the memory free now and the cores this process may use."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_memory", "cpu_cores"]


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), if known."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_cores() -> int | None:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
