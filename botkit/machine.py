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


def cpu_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Cores this process may use: its affinity (taskset, systemd CPUAffinity=), lowered to
    its cgroup's CPU quota (systemd CPUQuota=, a container's --cpus), not the machine's count."""
    try:
        cores: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    quota = _cgroup_quota(cgroup / "cpu.max")
    if quota is not None and cores is not None:
        return max(1, min(cores, quota))
    return cores


def _cgroup_quota(cpu_max: Path) -> int | None:
    """Whole cores a cgroup v2 quota allows ("QUOTA PERIOD" in microseconds, rounded up), or
    None without one ("max") (kernel Documentation/admin-guide/cgroup-v2.rst, cpu.max)."""
    try:
        quota, period = cpu_max.read_text(encoding="ascii").split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None
