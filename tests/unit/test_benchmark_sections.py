"""The RESULTS.md sections the benchmark scripts write: built from fake measured figures (nothing is
timed here), they must carry the heading, the figures given, the date and the load averages, and a
script must write only the sections it measured, never with ``--quick``."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import pytest

from helpers import REPO


def _import_benchmarks():
    """results_md and the scripts, imported as their own modules (benchmarks/ is no package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return [importlib.import_module(name)
                for name in ("results_md", "serve_load", "train_throughput", "scaling",
                             "doc_ablation", "doc_retrieval", "movielens")]
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


(results_md, serve_load, train_throughput, scaling, doc_ablation, doc_retrieval,
 movielens) = _import_benchmarks()

DATE = "2031-01-02 03:04-03:09 UTC"
LOAD_START, LOAD_END = "1.25 / 1.50 / 1.75", "3.50 / 2.25 / 2.00"


def fake_conditions(minute: int = 4, load: float = 1.25) -> "results_md.Conditions":
    """A finished measurement of 5 minutes on 2031-01-02 from 03:``minute``."""
    return results_md.Conditions(
        datetime(2031, 1, 2, 3, minute, tzinfo=timezone.utc), (load, 1.5, 1.75), 60.0 * minute,
        ended=datetime(2031, 1, 2, 3, minute + 5, tzinfo=timezone.utc), load_end=(3.5, 2.25, 2.0),
        seconds=300.0)


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown row whose first cell is ``first_cell`` (exactly one such row)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, text
    return rows[0]


def assert_run_line(text: str, heading: str, command: str) -> None:
    """Heading first; somewhere below it the command, the date, both load averages and the
    versions."""
    assert text.startswith(heading + "\n\n"), text[:200]
    assert f"Command: `{command}`\n" in text
    flat = " ".join(text.split())
    assert f"run {DATE} (5.0 min)" in flat and f"{LOAD_START} at the start" in flat, flat[:600]
    assert f"{LOAD_END} at the end" in flat and "torch " in flat and "numpy " in flat


# -- results_md ------------------------------------------------------------------------------------


def test_conditions_describe_start_and_end_and_refuse_an_unfinished_run():
    assert fake_conditions().describe() == (
        f"{DATE} (5.0 min); load average (1 / 5 / 15 min) {LOAD_START} at the start, {LOAD_END} "
        "at the end")
    assert fake_conditions().brief() == \
        "03:04-03:09 UTC (5.0 min), 1-minute load average 1.25 -> 3.50"
    with pytest.raises(ValueError):
        results_md.Conditions.start().describe()
    both = results_md.Conditions.spanning(fake_conditions(4, 0.5), fake_conditions(10, 2.0))
    assert both.describe().startswith("2031-01-02 03:04-03:15 UTC (11.0 min); load average "
                                      "(1 / 5 / 15 min) 0.50 / 1.50 / 1.75 at the start")


def test_table_helpers():
    assert results_md.median_and_runs([23.1, 41.6, 42.6, 183.0], "{:.1f}".format) == \
        "**42.1** (23.1 / 41.6 / 42.6 / 183.0)"
    assert results_md.median_and_runs([15060.0], "{:,.0f}".format) == "15,060"
    assert results_md.value_range([451.2, 435.0, 450.9], "{:,.0f}".format) == "435-451"
    assert results_md.value_range([451.2, 450.9], "{:,.0f}".format) == "451"
    assert results_md.markdown_table(["a", "b"], [["x", "1"]], "lr") == \
        "| a | b |\n| --- | ---: |\n| x | 1 |"
    with pytest.raises(ValueError):
        results_md.markdown_table(["a", "b"], [["x"]], "lr")
    assert results_md.command("x.py", ["--a", "b c"]) == \
        ".venv/bin/python benchmarks/x.py --a 'b c'"
    wrapped = results_md.fill("word " * 30 + "25-50-token " * 10)
    assert max(map(len, wrapped.splitlines())) <= 100 and "25-50-token" in wrapped.split()


# -- serve_load ------------------------------------------------------------------------------------


def fake_serving() -> list:
    """pair-1 meets its p99 target, pair-16 misses its rate target, embed-1000 meets its p50 one."""
    figures = {"pair-1": [(692.0, 1.46, 2.2), (700.0, 1.40, 2.5), (650.0, 1.50, 2.1)],
               "pair-16": [(350.0, 11.96, 43.14)], "embed-1000": [(13.8, 73.1, 87.4)]}
    return [serve_load.Measured(sc, [serve_load.Figures(*f) for f in figures[sc.name]])
            for sc in serve_load.scenarios(quick=False)]


def test_serve_load_section_has_the_run_and_the_medians():
    text = serve_load.section(".venv/bin/python benchmarks/serve_load.py", fake_conditions(),
                              "untrained model (enc_dim 300)", "2 workers x 4 gthread threads", 3,
                              fake_serving())
    assert_run_line(text, serve_load.SECTION, ".venv/bin/python benchmarks/serve_load.py")
    # Medians of the three pair-1 runs: 692 requests/s, p50 1.46 ms, p99 2.20 ms.
    assert table_row(text, "single-pair scores (`pair-1`)") == [
        "single-pair scores (`pair-1`)", "1", "692", "1.46", "2.20", "p99 < 20 ms", "yes"]
    assert table_row(text, "single-pair scores (`pair-16`)")[1:] == [
        "16", "350", "12.0", "43.1", ">= 400 requests/s", "**no**"]
    assert table_row(text, "1,000 x 50-token embeddings (`embed-1000`)")[2:] == [
        "13.8", "73.1", "87.4", "p50 < 150 ms", "yes"]
    assert "median of 3 runs" in " ".join(text.split())


def test_serve_load_main_writes_its_section_only_after_a_full_run(tmp_path, monkeypatch):
    monkeypatch.setattr(serve_load, "measure", lambda base, args, extra: fake_serving())
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other (other.py)\n\nkept\n")
    assert serve_load.main(["--quick", "--results", str(results)]) == 0
    assert serve_load.main(["--no-results", "--results", str(results)]) == 0
    assert serve_load.SECTION not in results.read_text()
    assert serve_load.main(["--results", str(results)]) == 0
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Other (other.py)\n\nkept\n\n")
    assert f"Command: `.venv/bin/python benchmarks/serve_load.py --results {results}`" in text
    assert "| single-pair scores (`pair-1`) | 1 | 692 |" in text


# -- train_throughput ------------------------------------------------------------------------------


def fake_load():
    child = {"records": 1_000_000, "seconds": 15.2, "arrays_mb": 404.0, "rss_before_mb": 31.0,
             "peak_rss_mb": 864.0}
    return train_throughput.LoadFigures(child, 687.0, 18.9, 866.0)


def fake_throughput():
    return train_throughput.ThroughputFigures(2, [
        ("pooled_embedding", train_throughput.Throughput(0.357, 0.00046, 512)),
        ("hcnn (4 layers, auto)", train_throughput.Throughput(3.062, 0.00048, 512))])


SPARSE_STEPS_MS = {  # four runs, in run order
    ("dense", 10_000): [23.1, 41.6, 42.6, 183.0], ("dense", 300_000): [330.0, 338.8, 374.6, 427.6],
    ("row_sparse", 10_000): [19.5, 20.1, 21.3, 23.1],
    ("row_sparse", 300_000): [32.1, 32.4, 33.8, 37.3],
    ("row_sparse", 3_000_000): [40.0, 43.4, 43.8, 44.1]}
UNIQUE_ROWS = {10_000: 5599.0, 300_000: 12466.0, 3_000_000: 15360.0}


def fake_sparse():
    runs = [{key: {"step_s": steps[k] / 1e3, "build_s": 0.001, "unique_rows": UNIQUE_ROWS[key[1]],
                   "peak_rss_mb": 435.0 + 16 * k, "threads": 2}
             for key, steps in SPARSE_STEPS_MS.items()} for k in range(4)]
    return train_throughput.SparseFigures(runs, [fake_conditions(4 + k) for k in range(4)])


def sparse_config():
    return train_throughput.Config(sparse_vocabs=(10_000, 300_000, 3_000_000),
                                   dense_vocabs=(10_000, 300_000))


def test_training_section_has_both_tables_and_both_parts_conditions():
    done = {"load": (fake_load(), fake_conditions(4)), "throughput": (fake_throughput(),
                                                                      fake_conditions(10))}
    text = train_throughput.training_results(".venv/bin/python benchmarks/train_throughput.py",
                                             train_throughput.Config(), done)
    assert text.startswith(train_throughput.TRAINING_HEADING + "\n\n")
    flat = " ".join(text.split())
    assert ("run 2031-01-02 03:04-03:15 UTC (11.0 min); load average (1 / 5 / 15 min) "
            f"{LOAD_START} at the start, {LOAD_END} at the end") in flat
    # The throughput part on its own:
    assert "03:10-03:15 UTC (5.0 min), 1-minute load average 1.25 -> 3.50" in flat
    assert table_row(text, "pooled_embedding") == [
        "pooled_embedding", "0.357", "1,434", "0.46", "1,432", "0.13 %"]
    assert table_row(text, "hcnn (4 layers, auto)")[1:3] == ["3.062", "167"]
    assert table_row(text, "15.2") == ["15.2", "65,789", "404", "31", "864", "< 1,536 MB: met"]
    assert "one 687 MB JSON Lines file, written in 18.9 s" in flat
    assert "ru_maxrss` gave 866 MB in this run" in flat


def test_sparse_section_has_medians_each_run_and_the_targets():
    text = train_throughput.sparse_results(
        ".venv/bin/python benchmarks/train_throughput.py --sections sparse", sparse_config(),
        {"sparse": (fake_sparse(), fake_conditions())})
    assert_run_line(text, train_throughput.SPARSE_HEADING,
                    ".venv/bin/python benchmarks/train_throughput.py --sections sparse")
    rows = {tuple(cells[:2]): cells[2:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| dense |") or line.startswith("| row_sparse |"))}
    assert rows["dense", "10,000"] == ["**42.1** (23.1 / 41.6 / 42.6 / 183.0)", "12,162", "5,599",
                                       "435-483"]
    assert rows["row_sparse", "3,000,000"][:3] == ["**43.6** (40.0 / 43.4 / 43.8 / 44.1)", "11,743",
                                                   "15,360"]
    assert "step ms (4 runs)" in text
    target_rows = [line for line in text.splitlines() if line.startswith("| row_sparse ")
                   and ">=" in line]
    assert target_rows == [
        "| row_sparse >= 14,000 samples/s at vocab 10,000 (published single-GPU figure) | "
        "24,734 samples/s | yes (1.8x) |",
        "| row_sparse >= 2.8x dense at vocab 300,000 (published single-GPU ratio) | "
        "10.8x (33.1 vs 356.7 ms) | yes |",
        "| row_sparse at vocab 3,000,000 >= 0.9x its vocab-10,000 speed | "
        "0.47x (43.6 vs 20.7 ms) | **no** |"]
    flat = " ".join(text.split())
    assert ("Runs: 1: 03:04-03:09 UTC (5.0 min), 1-minute load average 1.25 -> 3.50; "
            "2: 03:05-03:10") in flat
    assert "row_sparse speed at vocab 3,000,000 / at vocab 10,000: 0.47" in flat


def fake_section(figures):
    """A SECTIONS entry that returns ``figures`` instead of measuring."""
    return lambda cfg: figures


@pytest.mark.parametrize("sections, written", [
    (["sparse"], [train_throughput.SPARSE_HEADING]),
    (["load"], []),  # half of the training section: left alone rather than half replaced
    (["load", "throughput"], [train_throughput.TRAINING_HEADING]),
    (["load", "throughput", "sparse"], [train_throughput.TRAINING_HEADING,
                                        train_throughput.SPARSE_HEADING]),
])
def test_train_throughput_writes_only_the_sections_it_measured(tmp_path, monkeypatch, sections,
                                                               written):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # main() would set it for good
    for name, figures in (("load", fake_load()), ("throughput", fake_throughput()),
                          ("sparse", fake_sparse())):
        monkeypatch.setitem(train_throughput.SECTIONS, name, fake_section(figures))
    results = tmp_path / "RESULTS.md"
    argv = ["--sections", *sections, "--sparse-vocabs", "10000", "300000", "3000000",
            "--dense-vocabs", "10000", "300000", "--results", str(results)]
    assert train_throughput.main(["--quick", *argv]) == 0
    assert not results.exists()
    assert train_throughput.main(argv) == 0
    headings = [line for line in results.read_text().splitlines()
                if line.startswith("## ")] if results.exists() else []
    assert headings == written
    if written:
        assert "Command: `.venv/bin/python benchmarks/train_throughput.py --sections" in \
            results.read_text()


# -- scaling ---------------------------------------------------------------------------------------


RATES = {1: [15060.0, 14965.0, 15034.0], 2: [6330.0, 6046.0, 6164.0]}


def test_scaling_section_has_each_run_and_the_speedup_of_the_medians():
    text = scaling.section(".venv/bin/python benchmarks/scaling.py", fake_conditions(),
                           scaling.FULL, RATES, scaling.paper_rows())
    assert_run_line(text, scaling.SECTION, ".venv/bin/python benchmarks/scaling.py")
    assert table_row(text, "1 | gloo") == [
        "1", "gloo", "**15,034** (15,060 / 14,965 / 15,034)", "1.00x"]
    assert table_row(text, "2 | gloo") == [
        "2", "gloo", "**6,164** (6,330 / 6,046 / 6,164)", "0.41x"]
    assert "records/s (3 runs)" in text
    assert table_row(text, "16")[2:] == ["6.75 GB", "29.1 MB", "232x"]  # on paper, seeded
    assert "vocab 300,000, 40,000 records of 50 + 50 Zipf(1.1) tokens" in " ".join(text.split())


def test_scaling_main_writes_its_section_only_after_a_full_run(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "measure", lambda sizes, procs, runs: RATES)
    results = tmp_path / "RESULTS.md"
    assert scaling.main(["--quick", "--results", str(results)]) == 0
    assert not results.exists()
    assert scaling.main(["--results", str(results)]) == 0
    text = results.read_text()
    assert re.search(r"^## Scaling out \(benchmarks/scaling\.py\)$", text, re.M)
    assert "| 2 | gloo | **6,164** (6,330 / 6,046 / 6,164) | 0.41x |" in text


# -- the document benchmarks: their sections quote the run the same way ----------------------------


def test_doc_ablation_section_has_the_run_and_its_rows():
    args = argparse.Namespace(argv=["--rows", "2"], seed=0, pairs_per_article=10, enc_dim=128,
                              epochs=20, data_seconds=7.0)
    counts = dict(articles=3788, train_articles=3188, validation_articles=300, test_articles=300,
                  vocab_size=16744, train=31320, validation_pairs=293, test_pairs=291,
                  validation=1758, test=1746)
    outcome = doc_ablation.Outcome(doc_ablation.TABLE_1[1], 0.851, 0.32, 3, 6, 70.0)
    text = doc_ablation.section(args, doc_ablation.Corpus(Path("data"), 16744, counts), [outcome],
                                fake_conditions())
    assert_run_line(text, doc_ablation.SECTION,
                    ".venv/bin/python benchmarks/doc_ablation.py --rows 2")
    assert "| 3 | off | default | 0.92 | 0.851 | 0.21 | 0.32 | 4 / 6 | 70 |" in text
    assert "Preparing the data took 7 s of it." in " ".join(text.split())


def test_doc_retrieval_section_has_the_run_and_its_rows():
    args = argparse.Namespace(argv=[], seed=0, pairs_per_article=10)
    counts = dict(articles=3716, train_articles=3116, test_articles=600, vocab_size=16699,
                  train_pairs=31160, truth_tokens_median=420.0)
    corpus = doc_retrieval.Corpus(Path("train.jsonl"), None, [], [], [], [], [], counts)
    tfidf = doc_retrieval.Outcome("tf-idf", "TF-IDF cosine, whole truths",
                                  np.array([1, 1, 3, 60]), seconds=1.0)
    text = doc_retrieval.section(args, corpus, [tfidf], fake_conditions())
    assert_run_line(text, doc_retrieval.SECTION, ".venv/bin/python benchmarks/doc_retrieval.py")
    assert ("| tf-idf | TF-IDF cosine, whole truths | 50.0 % | 75.0 % | 75.0 % | 75.0 % | 75.0 % "
            "| 16.2 |  | 1 |") in text


def test_movielens_item_bags_repeat_raters_by_stars_and_leave_out_the_records_own():
    """A training record never sees its own rating; a validation record sees all of the movie's
    training ratings; token 0 leads every bag, so a movie nobody rated still has one."""
    train = np.array([[1, 10, 3], [2, 10, 5], [3, 11, 1]])
    valid = np.array([[4, 10, 2], [4, 12, 4]])
    bags = movielens.ItemBags(train)
    assert bags.in1(train, own=True) == [[0, 2, 2, 2, 2, 2], [0, 1, 1, 1], [0]]
    assert bags.in1(valid, own=False) == [[0, 1, 1, 1, 2, 2, 2, 2, 2], [0]]
    extra, train_in1, valid_in1 = movielens.framed("autorec", train, valid)
    assert extra == {"enc1_vocab_size": "5", "enc1_max_seq_len": "9"}
    assert movielens.framed("tuned", train, valid) == ({}, None, None)


def test_movielens_section_has_every_run_the_targets_and_the_configurations():
    def result(name, seed, rmse):
        return {"name": name, "seed": seed, "epochs_run": 30, "best_epoch": 25, "rmse_log": rmse,
                "rmse_model": rmse + 1e-6, "rmse_model_clipped": rmse - 0.001, "baseline": 0.9667,
                "seconds": 42.0}

    results = [result("tuned", 0, 0.9397), result("autorec", 0, 0.9165), result("autorec", 1, 0.93)]
    text = movielens.section("cmd", fake_conditions(), results, "90,570 train", 0)
    assert_run_line(text, movielens.SECTION, "cmd")
    assert "| autorec | 0 | 30 | 25 | 0.9165 | 0.9155 | 0.9667 | 42 |" in text
    assert "| autorec | 1 | 30 | 25 | 0.9300 | 0.9290 | 0.9667 | 42 |" in text
    assert ("validation RMSE <= 0.95: met; validation RMSE <= 0.92: met (best: autorec, 0.9165)"
            in text)
    assert "`enc1_pooling` sum" in " ".join(text.split())
    assert movielens.NOTES.splitlines()[0] in text
    missed = movielens.targets([result("tuned", 0, 0.9397), result("autorec", 1, 0.91)], 0)
    assert missed.endswith("validation RMSE <= 0.92: **not met** (best: tuned, 0.9397)")
