"""Write one benchmark's section of ``benchmarks/RESULTS.md``, leaving every other section as it is,
and the pieces every section quotes: the command, when it ran and under what load, the versions.

    from results_md import Conditions, command, run_line, write_section  # benchmarks/ on sys.path
    conditions = Conditions.start()
    ...measure...
    conditions.finish()
    write_section("## My benchmark (benchmarks/mine.py)",
                  f"## My benchmark (benchmarks/mine.py)\n\n"
                  f"{run_line(command('mine.py', argv), conditions)}\n\n...")
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

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


def add_results_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-results`` and ``--results PATH``, the same in every script that writes a section."""
    parser.add_argument("--no-results", action="store_true",
                        help="do not write the results file (implied by --quick)")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="PATH",
                        help="the markdown file to write the section(s) to (default: "
                             "benchmarks/RESULTS.md); another path leaves RESULTS.md alone")


def command(script: str, argv: Sequence[str]) -> str:
    """The command line a section quotes, so that a reader can rerun exactly this measurement."""
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *argv])


@dataclass
class Conditions:
    """When a measurement ran and how loaded the machine was at its start and end: on a shared VM a
    figure means little without the load it was taken under."""

    started: datetime  # UTC
    load_start: tuple[float, float, float]  # os.getloadavg(): 1, 5 and 15 minutes
    clock_start: float  # time.perf_counter() at the start, for the duration
    ended: datetime | None = None
    load_end: tuple[float, float, float] | None = None
    seconds: float | None = None

    @classmethod
    def start(cls) -> "Conditions":
        return cls(datetime.now(timezone.utc), os.getloadavg(), time.perf_counter())

    def elapsed(self) -> float:
        """Seconds since the start (for progress lines before :meth:`finish`)."""
        return time.perf_counter() - self.clock_start

    def finish(self) -> "Conditions":
        """Record the end (time and load); returns itself."""
        self.ended, self.load_end = datetime.now(timezone.utc), os.getloadavg()
        self.seconds = self.elapsed()
        return self

    @classmethod
    def spanning(cls, first: "Conditions", last: "Conditions") -> "Conditions":
        """From the start of ``first`` to the end of ``last`` (measurements that ran one after the
        other, reported as one)."""
        if last.seconds is None:
            raise ValueError("Conditions.finish() was not called")
        return cls(first.started, first.load_start, first.clock_start, last.ended, last.load_end,
                   last.clock_start + last.seconds - first.clock_start)

    def describe(self) -> str:
        """``2026-11-29 14:02-14:09 UTC (6.8 min); load average (1 / 5 / 15 min) 0.21 / 0.30 / 0.35
        at the start, 2.05 / 1.10 / 0.60 at the end``."""
        if self.ended is None or self.load_end is None or self.seconds is None:
            raise ValueError("Conditions.finish() was not called")
        same_day = self.ended.date() == self.started.date()
        end = f"{self.ended:%H:%M}" if same_day else f"{self.ended:%Y-%m-%d %H:%M}"
        return (f"{self.started:%Y-%m-%d %H:%M}-{end} UTC ({duration(self.seconds)}); "
                f"load average (1 / 5 / 15 min) {_loads(self.load_start)} at the start, "
                f"{_loads(self.load_end)} at the end")

    def brief(self) -> str:
        """``14:02-14:04 UTC (2.1 min), 1-minute load average 1.62 -> 1.80`` (at the start -> at the
        end): for one of several measurements whose date the section already gives."""
        if self.ended is None or self.load_end is None or self.seconds is None:
            raise ValueError("Conditions.finish() was not called")
        return (f"{self.started:%H:%M}-{self.ended:%H:%M} UTC ({duration(self.seconds)}), 1-minute "
                f"load average {self.load_start[0]:.2f} -> {self.load_end[0]:.2f}")


def _loads(loads: Sequence[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in loads)


def duration(seconds: float) -> str:
    """``42 s`` or ``6.8 min``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def load_average() -> str:
    """The 1 / 5 / 15-minute load averages now, for progress lines."""
    return _loads(os.getloadavg())


def run_line(command_line: str, conditions: Conditions) -> str:
    """The paragraph under a section's heading: command, date and load, versions."""
    # The command stays on one line, so that it can be copied as it is.
    return f"Command: `{command_line}`\n" + fill(f"-- run {conditions.describe()}; {versions()}.")


def cpu() -> str:
    """The CPU model and the data caches cpu0 reports (Linux ``/proc`` and ``/sys``; "unknown CPU"
    elsewhere): what fits in cache decides some of the figures."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / name).read_text().strip()
                                 for name in ("level", "type", "size"))
        except OSError:
            continue
        if kind != "Instruction":
            caches.append(f"L{level} {_cache_size(size)}")
    return f"{model}{' (caches of cpu0: ' + ', '.join(caches) + ')' if caches else ''}"


def _cache_size(size: str) -> str:
    """``2048K`` -> ``2 MB``, ``48K`` -> ``48 KB``."""
    if size.endswith("K") and int(size[:-1]) >= 1024:
        return f"{int(size[:-1]) / 1024:g} MB"
    return size.replace("K", " KB").replace("M", " MB")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (numbers)."""
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("every row and the alignment need one entry per column")
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def median_and_runs(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """One value as itself; several as the bold median and each run's value in run order:
    ``**42.1** (23.1 / 41.6 / 42.6 / 183.0)``."""
    if len(values) == 1:
        return fmt(values[0])
    return f"**{fmt(statistics.median(values))}** ({' / '.join(fmt(v) for v in values)})"


def value_range(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """``451`` when every run gave the same (formatted) value, else ``435-451``."""
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low}-{high}"


def fill(text: str, first: str = "", rest: str = "") -> str:
    """One generated paragraph, re-wrapped at 100 columns like the hand-written ones (``first`` and
    ``rest`` indent its first and following lines: ``fill(text, "- ", "  ")`` is a list item).
    Never breaks inside a word or at a hyphen: "25-50" stays whole."""
    return textwrap.fill(" ".join(text.split()), width=100, initial_indent=first,
                         subsequent_indent=rest, break_long_words=False, break_on_hyphens=False)


def bullet(text: str) -> str:
    """A generated list item, wrapped."""
    return fill(text, "- ", "  ")


def plural(n: int, word: str) -> str:
    """``1 run``, ``4 runs``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
