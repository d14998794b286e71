"""The platform readers of available memory (object2vec.platform.memory): fake /proc and cgroup
files, v1 and v2, and this machine's own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import NEEDS_CUDA

from object2vec.platform.memory import host_available

GiB = 1024 ** 3

# -- what the platform says is available -----------------------------------------------------------


def fake_proc(root: Path, available_kib: int) -> Path:
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(
        f"MemTotal:       32000000 kB\nMemFree:         1000000 kB\n"
        f"MemAvailable:   {available_kib} kB\nBuffers:          100 kB\n")
    return root / "proc"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_host_memory_without_a_cgroup_limit_is_memavailable(tmp_path):
    proc = fake_proc(tmp_path, 8_000_000)
    got = host_available(proc=proc, cgroup=tmp_path / "no-cgroup")
    assert got.bytes == 8_000_000 * 1024 and "MemAvailable" in got.source


def test_cgroup_v2_limit_minus_usage_wins_when_smaller(tmp_path):
    """memory.max 4 GiB, memory.current 3 GiB of which 512 MiB inactive file cache (reclaimable):
    1.5 GiB left, less than MemAvailable's 8 GB."""
    proc = fake_proc(tmp_path, 8_000_000)
    cg = tmp_path / "cgroup"
    write(cg / "memory.max", f"{4 * GiB}\n")
    write(cg / "memory.current", f"{3 * GiB}\n")
    write(cg / "memory.stat", f"anon 100\ninactive_file {512 * 1024 ** 2}\nactive_file 7\n")
    got = host_available(proc=proc, cgroup=cg)
    assert got.bytes == GiB + GiB // 2
    assert str(cg / "memory.max") in got.source


def test_cgroup_v2_without_a_limit_is_ignored(tmp_path):
    proc = fake_proc(tmp_path, 1000)
    cg = tmp_path / "cgroup"
    write(cg / "memory.max", "max\n")
    write(cg / "memory.current", "5\n")
    assert host_available(proc=proc, cgroup=cg).bytes == 1000 * 1024


def test_cgroup_v1_limit_minus_usage(tmp_path):
    proc = fake_proc(tmp_path, 8_000_000)
    cg = tmp_path / "cgroup"
    write(cg / "memory" / "memory.limit_in_bytes", f"{2 * GiB}\n")
    write(cg / "memory" / "memory.usage_in_bytes", f"{GiB}\n")
    write(cg / "memory" / "memory.stat", "cache 5\ntotal_inactive_file 1024\n")
    got = host_available(proc=proc, cgroup=cg)
    assert got.bytes == GiB + 1024 and "memory.limit_in_bytes" in got.source


def test_cgroup_v1_unlimited_is_ignored(tmp_path):
    proc = fake_proc(tmp_path, 1000)
    cg = tmp_path / "cgroup"
    write(cg / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(cg / "memory" / "memory.usage_in_bytes", "5\n")
    assert host_available(proc=proc, cgroup=cg).bytes == 1000 * 1024


def test_nothing_readable_means_unknown(tmp_path):
    assert host_available(proc=tmp_path / "none", cgroup=tmp_path / "none") is None


def test_this_machine_reports_something_plausible():
    got = host_available()
    assert got is not None and 0 < got.bytes < 2 ** 50, got


@pytest.mark.cuda
@NEEDS_CUDA
def test_the_gpu_reports_its_free_memory():
    from object2vec.platform.memory import device_available

    free = device_available(torch.device("cuda", 0))
    assert 0 < free.bytes <= torch.cuda.get_device_properties(0).total_memory
