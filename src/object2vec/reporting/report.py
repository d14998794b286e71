"""What a training job leaves in ``output/data`` (SageMaker uploads it as ``output.tar.gz``):

    metrics.json          {"best_epoch", "stopped_early", "finished", "epochs": [one dict per epoch],
                           "test"}; non-finite numbers are written as null
    training_curves.png   one panel per metric (loss, accuracy, throughput) over the epochs

Both are rewritten after every epoch (to a temporary file, then renamed over the old one), so a stopped
or failed job keeps what it had. :func:`write_report` never raises: a report is not worth a failed job.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from object2vec.reporting.plot import Panel, Series, render_curves

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"
PANEL_ORDER = {"cross_entropy": 0, "mean_squared_error": 0, "accuracy": 1}  # losses first
SPLITLESS_LABELS = {"throughput": "train"}  # a history key without "split:" and whose series it is
PANEL_TITLES = {"cross_entropy": "cross_entropy (loss)",
                "mean_squared_error": "mean_squared_error (loss)",
                "throughput": "throughput (records/s)"}


def history_panels(history: list[dict[str, float]]) -> tuple[list[float], list[Panel]]:
    """Epoch numbers, and one panel per metric name with a series per split: the history keys
    ``train:cross_entropy`` and ``validation:cross_entropy`` become one ``cross_entropy`` panel."""
    x = [float(row.get("epoch", i)) for i, row in enumerate(history)]
    groups: dict[str, list[Series]] = {}
    for key in dict.fromkeys(k for row in history for k in row if k != "epoch"):
        split, _, metric = key.rpartition(":")
        values = [_number(row.get(key)) for row in history]
        groups.setdefault(metric, []).append(Series(split or SPLITLESS_LABELS.get(key, key), values))
    order = sorted(groups, key=lambda m: PANEL_ORDER.get(m, 2))  # stable: history order otherwise
    return x, [Panel(PANEL_TITLES.get(m, m), groups[m]) for m in order]


def curves_png(summary: dict) -> bytes:
    """The PNG of a metrics.json ``summary``."""
    history = summary.get("epochs") or []
    if not history:
        return render_curves([0], [], title="object2vec training: no epoch finished yet")
    x, panels = history_panels(history)
    best = summary.get("best_epoch")
    best = best if isinstance(best, int) and best >= 0 else None  # -1: no finite loss yet
    title = (f"object2vec training: {len(history)} epoch{'s' * (len(history) != 1)}"
             f"{'' if summary.get('finished') else ' so far'}")
    title += "" if best is None else f", best epoch {best}"
    title += ", stopped early" if summary.get("stopped_early") else ""
    test = summary.get("test") or {}
    note = "test: " + ", ".join(f"{k}={_number(v):.4g}" for k, v in test.items()) if test else ""
    return render_curves(x, panels, title=title, best_x=best, note=note)


def write_report(out_dir: Path, summary: dict) -> bool:
    """Write metrics.json and training_curves.png for ``summary`` into ``out_dir``; True if both
    were written. Errors are logged as warnings, never raised."""
    written = 0
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n"
        _replace(out_dir / METRICS_FILE, text.encode())
        written += 1
    except Exception as exc:  # noqa: BLE001 -- reporting must not fail training
        log.warning("could not write %s: %r", out_dir / METRICS_FILE, exc)
    try:
        _replace(out_dir / CURVES_FILE, curves_png(summary))
        written += 1
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write %s: %r", out_dir / CURVES_FILE, exc)
    return written == 2


def _replace(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one (one writer: global rank 0)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _finite(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
