"""CUDA forward compatibility: run the image's CUDA 12 build of torch on a host driver that is older.

SageMaker's default real-time and batch inference hosts (ml.g4dn, ml.g5, ml.p3, ml.p4d) run NVIDIA
driver 470, whose CUDA is 11.4; a CUDA 12 program needs driver >= 525 (CUDA's minor-version
compatibility). NVIDIA's answer for data-centre GPUs is the forward-compatibility package
(``cuda-compat-12-x``): a newer user-mode driver, ``libcuda.so.<version>``, in
``/usr/local/cuda/compat``, used when it is on the library path. The NVIDIA Container Toolkit no
longer puts it there by itself (1.17.4 and later; SageMaker's ``-gpu-2-1`` and ``-gpu-3-1`` AMIs
turn the mounting off), so the image does, and only when the host's driver is older than the
package's: a newer host driver must win, and on a host without a GPU nothing changes.

``container/train`` and ``container/serve`` call :func:`reexec_with_compat` first, before torch
is imported (the dynamic loader reads ``LD_LIBRARY_PATH`` once, at process start).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

COMPAT_DIR = Path("/usr/local/cuda/compat")
DRIVER_FILE = Path("/proc/driver/nvidia/version")  # present on a host with the NVIDIA kernel module
MARKER = "OBJECT2VEC_CUDA_COMPAT"  # set once decided, so that a re-executed process does not loop
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def _version(text: str) -> tuple[int, ...] | None:
    match = _VERSION.search(text)
    return tuple(int(x) for x in match.groups() if x is not None) if match else None


def host_driver_version(driver_file: Path = DRIVER_FILE) -> tuple[int, ...] | None:
    """The loaded NVIDIA kernel module's version (``NVRM version: ... Kernel Module  470.256.02 ...``),
    or None without one."""
    try:
        line = driver_file.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return _version(line.split("Kernel Module", 1)[-1])


def compat_driver_version(compat_dir: Path = COMPAT_DIR) -> tuple[int, ...] | None:
    """The forward-compatibility driver's version, from its ``libcuda.so.<version>``, or None."""
    versions = [_version(p.name[len("libcuda.so."):]) for p in compat_dir.glob("libcuda.so.*.*")]
    return max((v for v in versions if v), default=None)


def compat_environment(environ: Mapping[str, str], driver_file: Path = DRIVER_FILE,
                       compat_dir: Path = COMPAT_DIR) -> dict[str, str] | None:
    """The environment to re-run this process with, or None to go on as is: ``compat_dir`` first on
    ``LD_LIBRARY_PATH`` when the host has a driver older than the compat package's."""
    if environ.get(MARKER):
        return None
    host, compat = host_driver_version(driver_file), compat_driver_version(compat_dir)
    if host is None or compat is None or host >= compat:
        return None  # no GPU, no package, or a host driver as new or newer: the host's own driver
    paths = [str(compat_dir), *filter(None, environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return {**environ, "LD_LIBRARY_PATH": ":".join(paths), MARKER: ".".join(map(str, host))}


def reexec_with_compat(driver_file: Path = DRIVER_FILE, compat_dir: Path = COMPAT_DIR) -> None:
    """Re-execute this program with the forward-compatibility driver on the library path when the
    host needs it (see the module docstring); otherwise return at once."""
    env = compat_environment(os.environ, driver_file, compat_dir)
    if env is not None:
        print(f"host NVIDIA driver {env[MARKER]} is older than the image's CUDA: using the CUDA "
              f"forward-compatibility driver in {compat_dir}", file=sys.stderr, flush=True)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
