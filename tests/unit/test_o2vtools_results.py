"""tools/o2vtools/results.py: run conditions, table helpers and the figures' JSON file."""

import json

import pytest
from helpers import DATE, fake_conditions
from o2vtools import results

LOAD_START, LOAD_END = "1.25 / 1.50 / 1.75", "3.50 / 2.25 / 2.00"


def test_conditions_describe_start_and_end_and_refuse_an_unfinished_run():
    assert fake_conditions().describe() == (
        f"{DATE} (5.0 min); load average (1 / 5 / 15 min) {LOAD_START} at the start, {LOAD_END} "
        "at the end")
    assert fake_conditions().brief() == \
        "03:04-03:09 UTC (5.0 min), 1-minute load average 1.25 -> 3.50"
    with pytest.raises(ValueError):
        results.Conditions.start().describe()
    both = results.Conditions.spanning(fake_conditions(4, 0.5), fake_conditions(10, 2.0))
    assert both.describe().startswith("2031-01-02 03:04-03:15 UTC (11.0 min); load average "
                                      "(1 / 5 / 15 min) 0.50 / 1.50 / 1.75 at the start")


def test_conditions_survive_their_json_form():
    again = results.Conditions.from_json(json.loads(json.dumps(fake_conditions().to_json())))
    assert again.describe() == fake_conditions().describe()
    assert again.brief() == fake_conditions().brief()


def test_table_helpers():
    assert results.median_and_runs([23.1, 41.6, 42.6, 183.0], "{:.1f}".format) == \
        "**42.1** (23.1 / 41.6 / 42.6 / 183.0)"
    assert results.median_and_runs([15060.0], "{:,.0f}".format) == "15,060"
    assert results.value_range([451.2, 435.0, 450.9], "{:,.0f}".format) == "435-451"
    assert results.value_range([451.2, 450.9], "{:,.0f}".format) == "451"
    assert results.markdown_table(["a", "b"], [["x", "1"]], "lr") == \
        "| a | b |\n| --- | ---: |\n| x | 1 |"
    with pytest.raises(ValueError):
        results.table(["a", "b"], [["x"]], "lr")
    assert results.command("x.py", ["--a", "b c"]) == \
        ".venv/bin/python benchmarks/x.py --a 'b c'"
    wrapped = results.fill("word " * 30 + "25-50-token " * 10)
    assert max(map(len, wrapped.splitlines())) <= 100 and "25-50-token" in wrapped.split()
    assert results.plural(1, "run") == "1 run" and results.plural(1200, "run") == "1,200 runs"


def test_write_results_holds_command_conditions_versions_tables_and_values(tmp_path):
    path = tmp_path / "sub" / "mine.json"
    results.write_results(path, "mine.py", ["--runs", "2"], fake_conditions(),
                          {"main": results.table(["a"], [["1"]], "r")}, {"best": "0.91"})
    data = json.loads(path.read_text())
    assert data["command"] == ".venv/bin/python benchmarks/mine.py --runs 2"
    assert results.Conditions.from_json(data["conditions"]).describe() == \
        fake_conditions().describe()
    assert "torch " in data["versions"] and "numpy " in data["versions"]
    assert data["tables"] == {"main": {"header": ["a"], "align": "r", "rows": [["1"]]}}
    assert data["values"] == {"best": "0.91"}
