"""tools/o2vtools/render.py: RESULTS.md from prose templates and the figures' JSON files; and the
committed prose and figures render."""

import json

import pytest
from helpers import DATE, REPO, fake_conditions
from o2vtools import render
from o2vtools.results import Conditions, table


def results_file(**values) -> dict:
    return {"command": ".venv/bin/python benchmarks/a.py --quick", "versions": "python 3, torch 2",
            "conditions": fake_conditions().to_json(),
            "tables": {"main": table(["name", "n"], [["x", "1,024"]], "lr")}, "values": values}


def test_section_fills_run_line_tables_and_values():
    text = render.section("## A (a.py)\n\n${run}\n\nSeed ${seed}, $$5.\n\n${table.main}\n",
                          results_file(seed=7))
    assert text.startswith("## A (a.py)\n\nCommand: `.venv/bin/python benchmarks/a.py --quick`\n")
    flat = " ".join(text.split())
    assert f"-- run {DATE} (5.0 min); load average" in flat and "python 3, torch 2." in flat
    assert "Seed 7, $5." in text and "| name | n |\n| --- | ---: |\n| x | 1,024 |\n" in text


def test_a_placeholder_without_its_figure_or_a_bare_dollar_is_an_error():
    with pytest.raises(KeyError):
        render.section("${missing}", results_file())
    with pytest.raises(ValueError):
        render.section("costs $5", results_file())


def test_render_puts_the_intro_first_then_the_sections_in_order(tmp_path):
    prose, figures = tmp_path / "prose", tmp_path / "results"
    prose.mkdir(), figures.mkdir()
    (prose / "intro.md").write_text("# Benchmark results\n\nIntro.\n")
    for name in ("b", "a"):
        (prose / f"{name}.md").write_text(f"## {name}\n\n${{n}}\n")
        (figures / f"{name}.json").write_text(json.dumps(results_file(n=name.upper())))
    assert render.render(prose, figures, ("b", "a")) == \
        "# Benchmark results\n\nIntro.\n\n## b\n\nB\n\n## a\n\nA\n"
    (figures / "c.json").write_text("{}")  # figures nobody renders
    with pytest.raises(ValueError):
        render.render(prose, figures, ("b", "a"))


def test_the_committed_results_render(tmp_path):
    """Every section of SECTIONS has its prose and figures, and every placeholder a figure."""
    out = tmp_path / "RESULTS.md"
    assert render.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results\n") and "${" not in text
    for name in render.SECTIONS:
        data = json.loads((REPO / "benchmarks" / "results" / f"{name}.json").read_text())
        assert Conditions.from_json(data["conditions"]).describe() in " ".join(text.split())


def test_results_md_is_rendered(tmp_path):
    """benchmarks/RESULTS.md is what the renderer makes of the committed prose and figures."""
    assert (REPO / "benchmarks" / "RESULTS.md").read_text() == render.render(
        REPO / "benchmarks" / "prose", REPO / "benchmarks" / "results")
