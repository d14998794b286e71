"""The benchmark scripts still run: each one's ``--quick`` mode, end to end, in a few seconds."""

import re
import subprocess
import sys

import pytest
from helpers import REPO, subprocess_env

pytestmark = pytest.mark.slow


def run_quick(script: str, tmp_path, *args: str, timeout: int = 120) -> str:
    """``benchmarks/<script> --quick [args]`` in a subprocess; its stdout, after checking it
    succeeded."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *args],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_quick_writing_nothing(script: str, tmp_path, timeout: int = 120) -> str:
    """``run_quick`` with ``--results`` pointing into ``tmp_path``: --quick must still write no
    results file (a --quick figure must never replace a real one)."""
    results = tmp_path / "results.json"
    out = run_quick(script, tmp_path, "--results", str(results), timeout=timeout)
    assert not results.exists() and "written to" not in out, out
    return out


def number(cell: str) -> float:
    """The first number of a table cell: ``**42.1** (40.0 / 44.2)`` -> 42.1, ``435-451`` -> 435."""
    return float(re.search(r"\d[\d,]*(\.\d+)?", cell).group().replace(",", ""))


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of every markdown table row (``| a | b |``) the script printed."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]


def test_serve_load_quick(tmp_path):
    """benchmarks/serve_load.py --quick: small model, real container/serve, figures printed, no
    results file written."""
    out = run_quick_writing_nothing("serve_load.py", tmp_path)
    rows = {re.search(r"`(.+)`", cells[0]).group(1): cells[1:5] for cells in table_rows(out)
            if "`" in cells[0]}  # | scenario (`name`) | clients | requests/s | p50 ms | p99 ms |
    assert set(rows) == {"pair-1", "pair-16", "embed-1000"}, out
    assert all(number(value) > 0 for values in rows.values() for value in values), out


def test_train_throughput_quick(tmp_path):
    """benchmarks/train_throughput.py --quick: a samples/s row per encoder, the load section's row
    with a peak RSS under the limit, the sparse section's dense and row_sparse rows (median and each
    of its 2 runs), and no results file written."""
    out = run_quick_writing_nothing("train_throughput.py", tmp_path)
    rows = {cells[0].split()[0]: cells[1:] for cells in table_rows(out)}  # "hcnn (4 layers, auto)"
    for network in ("pooled_embedding", "hcnn", "bilstm"):
        assert number(rows[network][1]) > 0, out
    load = next(cells for cells in rows.values() if cells[-1].endswith(": met"))
    assert number(load[3]) > 0, out  # peak RSS
    for storage in ("dense", "row_sparse"):  # | storage | vocab | step ms | samples/s | unique |
        vocab, step_ms, rate, unique, rss = (number(c) for c in rows[storage][:5])
        assert step_ms > 0 and rate > 0 and 0 < unique <= vocab and rss > 0, out
        assert re.fullmatch(r"\*\*[\d.,]+\*\* \([\d.,]+ / [\d.,]+\)", rows[storage][1]), out
    assert "row_sparse speed at vocab 20,000 / at vocab 1,000:" in out


def test_doc_ablation_quick(tmp_path):
    """benchmarks/doc_ablation.py --quick: rows 1 and 2 of Table 1 through container/train on a
    sample of NewsArticles; without negatives the model says "positive" to all (accuracy 1/6)."""
    out = run_quick_writing_nothing("doc_ablation.py", tmp_path)
    rows = [cells for cells in table_rows(out) if cells[0] in ("off", "3")]
    assert [r[0] for r in rows] == ["off", "3"], out
    assert float(rows[0][4]) == 0.167 and 0 < float(rows[1][4]) <= 1, out


def test_scaling_quick(tmp_path):
    """benchmarks/scaling.py --quick: 1 and 2 gloo processes through container/train, and the
    bytes-per-step table; no results file written."""
    out = run_quick_writing_nothing("scaling.py", tmp_path, timeout=300)
    rates = {cells[0]: number(cells[2]) for cells in table_rows(out)
             if len(cells) == 4 and cells[1] == "gloo"}
    assert set(rates) == {"1", "2"} and all(r > 0 for r in rates.values()), out
    assert "row_sparse" in out and " GB " in out, out


def test_movielens_quick(tmp_path):
    """benchmarks/movielens.py --quick: trains both framings (ids, and item bags with sum +
    sigmoid pooling) through container/train on a MovieLens sample, checks the saved model
    against the log, prints a finite validation RMSE next to the bias baseline, and writes no
    results file."""
    out = run_quick_writing_nothing("movielens.py", tmp_path)
    rows = {cells[0]: cells for cells in table_rows(out)}  # | name | seed | epochs | best | RMSE |
    for name in ("quick", "quick-autorec"):
        rmse, clipped, baseline = (float(c) for c in rows[name][4:7])
        assert 0 < clipped <= rmse < 3 and 0.8 < baseline < 1.1, out


def test_doc_retrieval_quick(tmp_path):
    """benchmarks/doc_retrieval.py --quick --results DIR: for each of two seeds every pipeline (ids,
    text-wordlevel, text-wordpiece) trains every row through container/train (the documents row:
    text pipelines, a train and a validation channel of documents) and embeds through
    container/serve; dev and test rows for each and for TF-IDF pooled over the seeds, one row per
    pipeline chosen on dev, per-seed test figures and hits@k through top_k the same as from the
    embeddings, positive throughput figures; an explicit --results folder gets the JSON (which the
    prose renders from) and the PNG."""
    import json

    from o2vtools.render import section

    out = run_quick("doc_retrieval.py", tmp_path, "--results", str(tmp_path / "dr"), timeout=480)
    dev_part, rest = out.split("\ntest:\n", 1)
    test_part, speed_part = rest.split("\nthroughput:\n", 1)
    dev = {(c[0], c[1]): c[2:8] for c in table_rows(dev_part)}  # hits@1, 5, 10, 20, 50, mean rank
    test = {(c[0], c[1]): c[2:] for c in table_rows(test_part)}
    speed = {c[0]: c[1:] for c in table_rows(speed_part) if c[0] != "pipeline"}
    pipelines = ("ids", "text-wordlevel", "text-wordpiece")
    trained = [(p, r) for p in pipelines for r in ("compatible", "wide-in-batch-idf", "documents")
               if (p, r) != ("ids", "documents")]
    for key in [*trained, ("tf-idf", "TF-IDF cosine, whole truths")]:
        hits = [float(c.rstrip(" %")) for c in dev[key][:5]]
        assert all(0 <= h <= 100 for h in hits) and hits == sorted(hits), out
        assert 1 <= float(dev[key][5]) <= 20, out  # mean rank among 20 dev truths
        assert 1 <= float(test[key][5]) <= 30, out  # mean rank among 30 test truths
        assert len(test[key][6].split("; ")) == 2, out  # hits@1 / mean rank of each seed
    for key in trained:
        assert test[key][7] == "same", out  # hits@k through top_k on /invocations
    for name in pipelines:
        assert [r for (p, r), c in test.items() if p == name and c[8] == "yes"], out  # one chosen
    assert sum(c[8] == "yes" for c in test.values()) == len(pipelines), out
    assert test["minilm", "all-MiniLM-L6-v2 zero-shot (not run)"][0] == "-", out  # --quick: no MiniLM
    for name in pipelines:
        assert number(speed[name][4]) > 0, out  # embedding
    assert number(speed["ids"][3]) > 0, out  # load (documents rows log documents, not records/s)
    assert "at least matches it on both" in out, out
    results = json.loads((tmp_path / "dr" / "doc_retrieval.json").read_text())
    assert (tmp_path / "dr" / "doc_retrieval_hits.png").stat().st_size > 0
    assert "${" not in section((REPO / "benchmarks/prose/doc_retrieval.md").read_text(), results)


def test_reliability_quick(tmp_path):
    """benchmarks/reliability.py --quick: a steady load without errors, then a worker killed with
    SIGKILL and replaced (the script exits 1 otherwise), the RSS table; no results file written."""
    out = run_quick_writing_nothing("reliability.py", tmp_path)
    rows = {cells[0]: cells[2:] for cells in table_rows(out)}
    assert rows["steady"][-1] == "0" and number(rows["steady"][1]) > 0, out  # errors, requests/s
    assert number(rows["worker killed half-way"][1]) > 0, out
    assert "a replacement worker answered a request after" in out, out
    assert any(name.endswith("(replacement)") for name in rows) and number(rows["master"][0]) > 0
