"""The benchmark scripts still run: each one's ``--quick`` mode, end to end, in a few seconds."""

import subprocess
import sys

import pytest

from helpers import REPO, subprocess_env

pytestmark = pytest.mark.slow


def run_quick(script: str, tmp_path, timeout: int = 120) -> str:
    """``benchmarks/<script> --quick`` in a subprocess; its stdout, after checking it succeeded."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick"],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of every markdown table row (``| a | b |``) the script printed."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]


def test_serve_load_quick(tmp_path):
    """benchmarks/serve_load.py --quick: small model, real container/serve, figures printed."""
    out = run_quick("serve_load.py", tmp_path)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in ("pair-1", "pair-16", "embed-1000")}
    assert set(rows) == {"pair-1", "pair-16", "embed-1000"}, out
    assert all(float(value) > 0 for values in rows.values() for value in values), out


def test_train_throughput_quick(tmp_path):
    """benchmarks/train_throughput.py --quick: a samples/s row per encoder, the load section's row
    with a peak RSS under the limit, and the sparse section's dense and row_sparse rows."""
    out = run_quick("train_throughput.py", tmp_path)
    rows = {cells[0]: cells[1:] for cells in table_rows(out)}
    for network in ("pooled_embedding", "hcnn", "bilstm"):
        assert float(rows[network][1].replace(",", "")) > 0, out
    load = next(cells for cells in rows.values() if cells[-1].startswith("OK"))
    assert float(load[3].replace(",", "")) > 0, out
    for storage in ("dense", "row_sparse"):  # | storage | vocab | step ms | samples/s | unique | RSS |
        vocab, step_ms, rate, unique, rss = (float(c.replace(",", "")) for c in rows[storage][:5])
        assert step_ms > 0 and rate > 0 and 0 < unique <= vocab and rss > 0, out
    assert "row_sparse speed at vocab 20,000 / at vocab 1,000:" in out


def test_doc_ablation_quick(tmp_path):
    """benchmarks/doc_ablation.py --quick: rows 1 and 2 of Table 1 through container/train on a
    sample of NewsArticles; without negatives the model says "positive" to all (accuracy 1/6)."""
    out = run_quick("doc_ablation.py", tmp_path)
    rows = [cells for cells in table_rows(out) if cells[0] in ("off", "3")]
    assert [r[0] for r in rows] == ["off", "3"], out
    assert float(rows[0][4]) == 0.167 and 0 < float(rows[1][4]) <= 1, out
    assert "written to" not in out  # --quick leaves RESULTS.md and the PNG alone


def test_scaling_quick(tmp_path):
    """benchmarks/scaling.py --quick: 1 and 2 gloo processes through container/train, and the
    bytes-per-step table."""
    out = run_quick("scaling.py", tmp_path, timeout=300)
    rates = {cells[0]: float(cells[2].replace(",", "")) for cells in table_rows(out)
             if len(cells) == 4 and cells[1] == "gloo"}
    assert set(rates) == {"1", "2"} and all(r > 0 for r in rates.values()), out
    assert "row_sparse" in out and " GB " in out, out


def test_movielens_quick(tmp_path):
    """benchmarks/movielens.py --quick: trains through container/train on a MovieLens sample and
    prints a finite validation RMSE next to the bias baseline."""
    out = run_quick("movielens.py", tmp_path)
    cells = next(cells for cells in table_rows(out) if cells[0] == "quick")
    rmse_log, rmse_model, _, baseline = (float(c) for c in cells[3:7])
    assert 0 < rmse_log < 3 and abs(rmse_log - rmse_model) < 1e-3 and 0.8 < baseline < 1.1


def test_doc_retrieval_quick(tmp_path):
    """benchmarks/doc_retrieval.py --quick: trains two rows through container/train, embeds through
    container/serve, and prints hits@k / mean rank rows for them and for TF-IDF."""
    out = run_quick("doc_retrieval.py", tmp_path)
    rows = {cells[0]: cells[2:] for cells in table_rows(out)}
    for name in ("compatible", "wide-in-batch-idf", "tf-idf"):
        hits = [float(c.rstrip(" %")) for c in rows[name][:5]]  # hits@1, 5, 10, 20, 50
        assert all(0 <= h <= 100 for h in hits) and hits == sorted(hits), out
        assert 1 <= float(rows[name][5]) <= 30, out  # mean rank among 30 truths
    assert rows["minilm"][0] == "-", out  # --quick leaves MiniLM out


def test_results_md_write_section_replaces_only_its_own_section(tmp_path):
    """benchmarks/results_md.py: a section is appended once, then replaced in place; the sections
    around it stay byte for byte."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from results_md import write_section
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## A (a.py)\n\nalpha\n\n## C (c.py)\n\ngamma\n")
    write_section("## B (b.py)", "## B (b.py)\n\nfirst\n", path)
    write_section("## A (a.py)", "## A (a.py)\n\nalpha 2\n", path)
    write_section("## B (b.py)", "## B (b.py)\n\nsecond\n", path)
    assert path.read_text() == ("# Benchmark results\n\n## A (a.py)\n\nalpha 2\n\n## C (c.py)\n\n"
                                "gamma\n\n## B (b.py)\n\nsecond\n")
    with pytest.raises(ValueError):
        write_section("## B (b.py)", "no heading\n", path)
