"""How much memory this process may still allocate: on the host (``/proc/meminfo`` and the cgroup
limit) and on a GPU (``torch.cuda.mem_get_info``). Read at call time, nothing at import.

A container's cgroup limit can be far below what the host's ``MemAvailable`` reports (a SageMaker
instance runs one container, a local ``docker run --memory`` does not), and going over it brings the
OOM killer, which leaves no message at all. So the host figure is the smaller of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
UNLIMITED = 2 ** 60  # cgroup v1 writes "no limit" as LONG_MAX rounded to a page


@dataclass(frozen=True)
class Available:
    """Bytes that can still be allocated, and where that figure comes from (for messages)."""

    bytes: int
    source: str


def _read_int(path: Path) -> int | None:
    """The integer in a one-value file; None when absent, unreadable or ``max`` (no limit)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    """One ``key value`` line of a cgroup ``memory.stat`` file (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def meminfo_available(proc: Path = PROC) -> Available | None:
    """``MemAvailable`` of ``/proc/meminfo``: free memory plus what the kernel can reclaim."""
    path = proc / "meminfo"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return Available(int(line.split()[1]) * 1024, f"MemAvailable in {path}")
    return None


def cgroup_available(cgroup: Path = CGROUP) -> Available | None:
    """The cgroup's memory limit minus its usage (v2 ``memory.max``, else v1 ``memory/``), or None
    without a limit. Inactive file cache counts as free: the kernel reclaims it before it kills
    (the "working set" that docker and the kubelet report)."""
    v1 = cgroup / "memory"
    for limit_file, usage_file, stat_file, cache_key in (
            (cgroup / "memory.max", cgroup / "memory.current", cgroup / "memory.stat",
             "inactive_file"),
            (v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes", v1 / "memory.stat",
             "total_inactive_file")):
        limit = _read_int(limit_file)
        if limit is None or limit >= UNLIMITED:
            continue
        usage = (_read_int(usage_file) or 0) - _stat_value(stat_file, cache_key)
        return Available(max(0, limit - max(0, usage)), f"cgroup limit {limit_file} minus usage")
    return None


def host_available(proc: Path = PROC, cgroup: Path = CGROUP) -> Available | None:
    """The smaller of ``MemAvailable`` and the cgroup's room; None when neither can be read."""
    found = [a for a in (meminfo_available(proc), cgroup_available(cgroup)) if a is not None]
    return min(found, key=lambda a: a.bytes) if found else None


def device_available(device: torch.device) -> Available:
    """Free memory of a CUDA device, as the driver reports it (other processes' use included)."""
    free, _total = torch.cuda.mem_get_info(device)
    return Available(int(free), f"free memory of {device} (torch.cuda.mem_get_info)")
