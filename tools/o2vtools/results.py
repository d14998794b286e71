"""What a benchmark writes: its figures as JSON (``benchmarks/results/<name>.json``), with the
command, when it ran, under what load and on which versions. :mod:`o2vtools.render` turns them into
``benchmarks/RESULTS.md``; the scripts print the same tables as they measure.

    conditions = Conditions.start()
    ...measure...
    write_results(args.results, "mine.py", args.argv, conditions.finish(),
                  tables={"main": table(["a", "b"], rows, "lr")}, values={"best": "0.91"})
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from o2vtools.process import REPO

RESULTS_DIR = REPO / "benchmarks" / "results"


@dataclass
class Conditions:
    """When a measurement ran and how loaded the machine was at its start and end: on a shared VM a
    figure means little without the load it was taken under."""

    started: datetime  # UTC
    load_start: tuple[float, float, float]  # os.getloadavg(): 1, 5 and 15 minutes
    clock_start: float = 0.0  # time.perf_counter() at the start
    ended: datetime | None = None
    load_end: tuple[float, float, float] | None = None
    seconds: float | None = None

    @classmethod
    def start(cls) -> Conditions:
        return cls(datetime.now(timezone.utc), os.getloadavg(), time.perf_counter())

    def elapsed(self) -> float:
        """Seconds since the start (for progress lines before :meth:`finish`)."""
        return time.perf_counter() - self.clock_start

    def finish(self) -> Conditions:
        """Record the end (time and load); returns itself."""
        self.ended, self.load_end = datetime.now(timezone.utc), os.getloadavg()
        self.seconds = self.elapsed()
        return self

    @classmethod
    def spanning(cls, first: Conditions, last: Conditions) -> Conditions:
        """From the start of ``first`` to the end of ``last`` (one after the other)."""
        if last.seconds is None:
            raise ValueError("Conditions.finish() was not called")
        return cls(first.started, first.load_start, first.clock_start, last.ended, last.load_end,
                   last.clock_start + last.seconds - first.clock_start)

    def _finished(self) -> None:
        if self.ended is None or self.load_end is None or self.seconds is None:
            raise ValueError("Conditions.finish() was not called")

    def to_json(self) -> dict:
        self._finished()
        return {"started": self.started.isoformat(), "ended": self.ended.isoformat(),
                "seconds": round(self.seconds, 1), "load_start": list(self.load_start),
                "load_end": list(self.load_end)}

    @classmethod
    def from_json(cls, data: dict) -> Conditions:
        return cls(datetime.fromisoformat(data["started"]), tuple(data["load_start"]), 0.0,
                   datetime.fromisoformat(data["ended"]), tuple(data["load_end"]), data["seconds"])

    def describe(self) -> str:
        """``2026-11-29 14:02-14:09 UTC (6.8 min); load average (1 / 5 / 15 min) 0.21 / 0.30 / 0.35
        at the start, 2.05 / 1.10 / 0.60 at the end``."""
        self._finished()
        same_day = self.ended.date() == self.started.date()
        end = f"{self.ended:%H:%M}" if same_day else f"{self.ended:%Y-%m-%d %H:%M}"
        return (f"{self.started:%Y-%m-%d %H:%M}-{end} UTC ({duration(self.seconds)}); "
                f"load average (1 / 5 / 15 min) {_loads(self.load_start)} at the start, "
                f"{_loads(self.load_end)} at the end")

    def brief(self) -> str:
        """``14:02-14:04 UTC (2.1 min), 1-minute load average 1.62 -> 1.80``."""
        self._finished()
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


def versions() -> str:
    """Python, torch and numpy versions and the CPU count."""
    import numpy as np
    import torch  # only for its version

    return (f"python {platform.python_version()}, torch {torch.__version__}, numpy "
            f"{np.__version__}, {os.cpu_count()} CPU cores ({platform.machine()})")


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


def command(script: str, argv: Sequence[str]) -> str:
    """The command line a section quotes, so that a reader can rerun exactly this measurement."""
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *argv])


def add_results_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--no-results`` and ``--results PATH``, the same in every script."""
    parser.add_argument("--no-results", action="store_true",
                        help="write no results file (implied by --quick)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / f"{name}.json",
                        metavar="PATH", help=f"the JSON file of the figures (default: "
                                             f"benchmarks/results/{name}.json)")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> dict:
    """A table as the JSON holds it; ``align`` has one letter per column, ``l`` or ``r``."""
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("every row and the alignment need one entry per column")
    return {"header": list(header), "align": align, "rows": [list(r) for r in rows]}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table (numbers right-aligned: ``r``)."""
    t = table(header, rows, align)
    lines = ["| " + " | ".join(t["header"]) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in t["rows"]])


def write_results(path: Path, script: str, argv: Sequence[str], conditions: Conditions,
                  tables: dict[str, dict] | None = None, values: dict | None = None) -> None:
    """``path`` (JSON): the command, the conditions, the versions, the tables and the values that
    ``benchmarks/prose/<name>.md`` quotes."""
    data = {"command": command(script, argv), "conditions": conditions.to_json(),
            "versions": versions(), "tables": tables or {}, "values": values or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"written to {path}; `make results` (python -m o2vtools.render) rebuilds RESULTS.md")


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
    """One generated paragraph wrapped at 100 columns, never inside a word or at a hyphen."""
    return textwrap.fill(" ".join(text.split()), width=100, initial_indent=first,
                         subsequent_indent=rest, break_long_words=False, break_on_hyphens=False)


def plural(n: int, word: str) -> str:
    """``1 run``, ``4 runs``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
