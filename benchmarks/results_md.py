"""Write one benchmark's section of ``benchmarks/RESULTS.md``, leaving every other section as it is,
and the versions line every section quotes.

    from results_md import versions, write_section  # benchmarks/ is on sys.path for its scripts
    write_section("## My benchmark (benchmarks/mine.py)", text)
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Add or replace the section that starts with the line ``heading`` (a ``## `` heading; it runs
    up to the next ``## `` heading or the end of the file) with ``text``, which starts with that
    heading. The file is read right before it is written: other scripts edit other sections."""
    if not text.startswith(heading + "\n"):
        raise ValueError(f"the section text must start with its heading line {heading!r}")
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = text.rstrip("\n") + "\n"
    if pattern.search(current):
        updated = pattern.sub(lambda _: body + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + body
    path.write_text(updated.rstrip("\n") + "\n")


def versions() -> str:
    """Python, torch and numpy versions and the CPU count, for a results section."""
    import torch  # only for its version: benchmarks train and serve in container subprocesses

    return (f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
            f"{os.cpu_count()} CPU cores ({platform.machine()})")
