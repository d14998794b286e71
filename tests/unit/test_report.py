"""The training report's files: metrics.json + training_curves.png written by :func:`write_report`
(the PNG decoded chunk by chunk with helpers.decode_png)."""

from __future__ import annotations

import json
import logging
import math

import pytest
from helpers import decode_png

from object2vec.reporting import report
from object2vec.reporting.plot import PANEL_HEIGHT, TITLE_HEIGHT, WIDTH


def history(n: int, nan_at: int | None = None) -> list[dict]:
    rows = [{"epoch": e, "train:accuracy": 0.5 + e / 40, "train:cross_entropy": 1 / (e + 1),
             "validation:accuracy": 0.5 + e / 50, "validation:cross_entropy": 1.1 / (e + 1),
             "throughput": 1000.0 + e} for e in range(n)]
    if nan_at is not None:
        rows[nan_at]["validation:cross_entropy"] = math.nan
    return rows


def test_history_becomes_one_panel_per_metric_losses_first():
    x, panels = report.history_panels(history(3))
    assert x == [0.0, 1.0, 2.0]
    assert [p.title for p in panels] == ["cross_entropy (loss)", "accuracy", "throughput (records/s)"]
    assert [s.label for s in panels[0].series] == ["train", "validation"]
    assert list(panels[0].series[1].values) == pytest.approx([1.1, 0.55, 1.1 / 3])


def test_write_report_writes_both_files_and_replaces_them(tmp_path):
    out = tmp_path / "output" / "data"
    for n in (1, 4):
        summary = {"best_epoch": n - 1, "stopped_early": False, "finished": n == 4,
                   "epochs": history(n, nan_at=0), "test": {"accuracy": 0.75} if n == 4 else {}}
        assert report.write_report(out, summary)
        metrics = json.loads((out / report.METRICS_FILE).read_text())
        assert len(metrics["epochs"]) == n and metrics["finished"] == (n == 4)
        assert metrics["epochs"][0]["validation:cross_entropy"] is None  # NaN: null, valid JSON
        img = decode_png((out / report.CURVES_FILE).read_bytes())
        assert img.shape == (TITLE_HEIGHT + 3 * PANEL_HEIGHT, WIDTH, 3)
    assert {p.name for p in out.iterdir()} == {report.CURVES_FILE, report.METRICS_FILE}  # no temp file


def test_a_plotting_failure_is_a_warning_and_metrics_json_is_still_written(tmp_path, monkeypatch,
                                                                           caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no pixels today")

    monkeypatch.setattr(report, "render_curves", broken)
    with caplog.at_level(logging.WARNING, logger=report.log.name):
        ok = report.write_report(tmp_path, {"best_epoch": 0, "epochs": history(1), "test": {}})
    assert not ok and "no pixels today" in caplog.text
    assert (tmp_path / report.METRICS_FILE).is_file()
    assert not (tmp_path / report.CURVES_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == [report.METRICS_FILE]  # no temporary file left


def test_an_unwritable_output_dir_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger=report.log.name):
        assert not report.write_report(blocker, {"best_epoch": 0, "epochs": history(1), "test": {}})
    assert caplog.text.count("could not write") == 2
