"""object2vec.platform.cuda_compat: the CUDA forward-compatibility driver goes first on the library
path only on a host whose driver is older than it; the re-executed program sees it and carries on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from object2vec.platform import cuda_compat

DRIVER_470 = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Fri May 10 23:28:23 UTC 2024\n"
              "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n")


def host(tmp_path: Path, text: str | None) -> Path:
    path = tmp_path / "version"
    if text is not None:
        path.write_text(text)
    return path


def compat(tmp_path: Path, *versions: str) -> Path:
    folder = tmp_path / "compat"
    folder.mkdir()
    for v in versions:
        (folder / f"libcuda.so.{v}").touch()
    (folder / "libcuda.so.1").touch()  # the soname link: not a version
    return folder


def test_versions_are_read_from_the_kernel_module_and_the_compat_library(tmp_path):
    assert cuda_compat.host_driver_version(host(tmp_path, DRIVER_470)) == (470, 256, 2)
    assert cuda_compat.host_driver_version(tmp_path / "absent") is None
    assert cuda_compat.compat_driver_version(compat(tmp_path, "560.35.03")) == (560, 35, 3)
    assert cuda_compat.compat_driver_version(tmp_path / "nothing") is None


@pytest.mark.parametrize(("driver", "expected"), [
    (DRIVER_470, True),  # SageMaker's default inference hosts: CUDA 12 needs the compat driver
    (DRIVER_470.replace("470.256.02", "560.35.03"), False),  # as new: the host's own
    (DRIVER_470.replace("470.256.02", "580.95.05"), False),  # newer: the host's own
    (None, False),  # no GPU
])
def test_the_compat_driver_is_used_only_under_an_older_host_driver(tmp_path, driver, expected):
    folder = compat(tmp_path, "560.35.03")
    env = cuda_compat.compat_environment({"LD_LIBRARY_PATH": "/opt/x:", "PATH": "/bin"},
                                         host(tmp_path, driver), folder)
    if not expected:
        assert env is None
        return
    assert env["LD_LIBRARY_PATH"] == f"{folder}:/opt/x" and env["PATH"] == "/bin"
    assert env[cuda_compat.MARKER] == "470.256.2"
    again = cuda_compat.compat_environment(env, host(tmp_path, driver), folder)
    assert again is None  # decided once: the re-executed process does not loop


def test_without_the_package_nothing_changes(tmp_path):
    assert cuda_compat.compat_environment({}, host(tmp_path, DRIVER_470), tmp_path / "none") is None


def test_reexec_runs_the_same_program_again_with_the_compat_path(tmp_path):
    """The real os.execve in a child interpreter: the program prints its LD_LIBRARY_PATH twice, once
    before (it re-executes) and never again after, since the second run finds the marker."""
    folder = compat(tmp_path, "560.35.03")
    program = tmp_path / "prog.py"
    program.write_text(
        "import os, sys\n"
        "from pathlib import Path\n"
        "from object2vec.platform import cuda_compat as c\n"
        "print('start', os.environ.get('LD_LIBRARY_PATH'), sys.argv[1:], flush=True)\n"
        f"c.reexec_with_compat(Path({str(host(tmp_path, DRIVER_470))!r}), Path({str(folder)!r}))\n"
        "print('go on', os.environ.get('LD_LIBRARY_PATH'), flush=True)\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, str(program), "train"], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.splitlines() == ["start None ['train']", f"start {folder} ['train']",
                                       f"go on {folder}"], out
    assert "forward-compatibility driver" in out.stderr
