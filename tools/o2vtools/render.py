"""``benchmarks/RESULTS.md`` from the prose in ``benchmarks/prose/*.md`` and the figures in
``benchmarks/results/*.json`` (``python -m o2vtools.render``; ``make bench`` runs it last).

``prose/intro.md`` comes first, then one section per name in ``SECTIONS``: ``prose/<name>.md`` with
``${run}`` (the command, date, load and versions), ``${table.<key>}`` (a table of the JSON) and
``${<key>}`` (a value of the JSON) filled in from ``results/<name>.json``. A placeholder without a
figure, or a figure file without its prose, is an error.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

from o2vtools.process import REPO
from o2vtools.results import Conditions, fill, markdown_table

BENCHMARKS = REPO / "benchmarks"
SECTIONS = ("serve_load", "train_throughput", "sparse", "scaling", "movielens", "doc_ablation",
            "doc_retrieval", "doc_retrieval_parlspeech", "doc_retrieval_minilm",
            "doc_retrieval_parlspeech_minilm", "serve_load_minilm", "neighbors", "reliability")


class Prose(string.Template):
    """``${name}`` placeholders only (a bare ``$`` is an error; ``$$`` is a dollar sign)."""

    idpattern = r"(?!)"
    braceidpattern = r"[a-z_][a-z0-9_.-]*"


def fields(results: dict) -> dict[str, str]:
    """The placeholders one results file fills."""
    run = (f"Command: `{results['command']}`\n" + fill(
        f"-- run {Conditions.from_json(results['conditions']).describe()}; {results['versions']}."))
    tables = {f"table.{k}": markdown_table(**t) if t["rows"] else "(none for these figures)"
              for k, t in results["tables"].items()}
    return {"run": run, **tables,
            **{k: str(v) for k, v in results["values"].items()}}


def section(prose: str, results: dict) -> str:
    """One section's markdown; a prose paragraph with figures in its text is re-wrapped at 100
    columns once they are filled in."""
    values, paragraphs = fields(results), []
    for paragraph in prose.strip("\n").split("\n\n"):
        text = Prose(paragraph).substitute(values)
        inline = "${" in paragraph and not paragraph.startswith(("${", "|", "-", "#", "!"))
        paragraphs.append(fill(text) if inline and "${run}" not in paragraph else text)
    return "\n\n".join(paragraphs) + "\n"


def render(prose_dir: Path, results_dir: Path, names=SECTIONS) -> str:
    """The whole RESULTS.md."""
    extra = {p.stem for p in results_dir.glob("*.json")} - set(names)
    if extra:
        raise ValueError(f"results without a section in SECTIONS: {sorted(extra)}")
    parts = [(prose_dir / "intro.md").read_text().rstrip("\n") + "\n"]
    for name in names:
        results = json.loads((results_dir / f"{name}.json").read_text())
        parts.append(section((prose_dir / f"{name}.md").read_text(), results))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prose", type=Path, default=BENCHMARKS / "prose")
    parser.add_argument("--results", type=Path, default=BENCHMARKS / "results")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "RESULTS.md")
    args = parser.parse_args(argv)
    args.out.write_text(render(args.prose, args.results))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
