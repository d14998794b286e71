"""Document-embedding ablation (object2vec.md 8.4, Table 1) on NewsArticles, through ``container/train``.

    .venv/bin/python benchmarks/doc_ablation.py          # the 9 rows of Table 1 (~10-15 min)
    .venv/bin/python benchmarks/doc_ablation.py --quick  # 2 rows on a few articles, 1 epoch (~30 s)
"""

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

from o2vtools import datasets
from o2vtools.process import REPO, train_tree
from o2vtools.results import Conditions, add_results_arguments, markdown_table, table, write_results

from object2vec.reporting.plot import PALETTE, Panel, Series, render_curves

CURVES = REPO / "benchmarks" / "doc_ablation_curves.png"
SENTENCE_LEN, DOCUMENT_LEN = 50, 500  # the notebook's enc0_max_seq_len; its long setting
SEED, ENC_DIM = 0, 128  # the split, sampling and shuffling seed; enc_dim (the notebook's 300 is slower)
PAIRS_PER_ARTICLE = 10  # AWS drew 1 per article, of 250k: from our ~3,200 that stays at the class prior
BASE_HYPERPARAMETERS = {**datasets.NOTEBOOK_HYPERPARAMETERS, "enc0_max_seq_len": str(DOCUMENT_LEN),
                        "enc_dim": str(ENC_DIM)}  # the notebook's, shared by every row
COMPARATORS = {"default": "hadamard, concat, abs_diff", "hadamard": "hadamard"}  # AWS: "customised"
# Table 1: negative_sampling_rate, tied token embeddings, comparators; AWS's test accuracy, cross-entropy
TABLE_1 = [(0, False, "default", "0.167", "23"), (3, False, "default", "0.92", "0.21"),
           (5, False, "default", "0.92", "0.19"), (0, True, "default", "0.167", "23"),
           (3, True, "default", "0.93", "0.18"), (5, True, "default", "0.936", "0.17"),
           (0, True, "hadamard", "0.17", "23"), (3, True, "hadamard", "0.93", "0.18"),
           (5, True, "hadamard", "0.94", "0.17")]
HEADER = ["negative_sampling_rate", "weight sharing", "comparator", "test accuracy (AWS)",
          "test accuracy (ours)", "test cross-entropy (AWS)", "test cross-entropy (ours)",
          "best epoch / epochs run", "train s"]


def build_corpus(out: Path, sample: int | None, held_out: int) -> dict[str, int]:
    """Write ``out/{train,validation,test}.jsonl`` (``held_out`` of ``sample`` articles held out); counts."""
    everything = datasets.load_news_articles()
    articles = datasets.sample(everything, sample, SEED)
    train, held = datasets.split_articles(articles, held_out / len(articles), SEED)
    validation, test = held[: len(held) // 2], held[len(held) // 2:]
    vocab = datasets.build_vocabulary(datasets.tokenize(a.text) for a in train)
    counts = {"articles": len(everything), "train_articles": len(train),
              "validation_articles": len(validation), "test_articles": len(test), "vocab_size": vocab.size}
    pairs = datasets.positive_pairs(train, PAIRS_PER_ARTICLE, SEED)
    records = datasets.shuffled(datasets.document_records(pairs, vocab, SENTENCE_LEN, DOCUMENT_LEN), SEED)
    counts["train"] = datasets.write_jsonl(out / "train.jsonl", records)
    for name, split, offset in (("validation", validation, 1), ("test", test, 2)):
        pairs = datasets.sentence_document_pairs(split, seed=SEED * 1000 + 500 + offset)
        counts[f"{name}_pairs"] = len(pairs)
        counts[name] = datasets.write_jsonl(out / f"{name}.jsonl", datasets.document_records(
            pairs, vocab, SENTENCE_LEN, DOCUMENT_LEN, 5, SEED + offset))
    return counts


def run_row(row: tuple, work: Path, number: int, vocab_size: int, epochs: int) -> dict:
    """Train row ``number`` of TABLE_1 on ``work/data``: its table cells and per-epoch history."""
    base, data = work / f"row{number}", work / "data"
    rate, tied, comparators, aws_accuracy, aws_cross_entropy = row
    hp = {**BASE_HYPERPARAMETERS, "negative_sampling_rate": str(rate), "epochs": str(epochs),
          "tied_token_embedding_weight": str(tied).lower(), "comparator_list": COMPARATORS[comparators],
          "enc0_vocab_size": str(vocab_size)}
    run = train_tree(base, hp, {c: data / f"{c}.jsonl" for c in ("train", "validation", "test")})
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    test = metrics["test"]  # what the log's #quality_metric test lines print (tests/integration)
    cells = [str(rate or "off"), "on" if tied else "off", comparators, aws_accuracy,
             f"{test['accuracy']:.3f}", aws_cross_entropy, f"{test['cross_entropy']:.3g}",
             f"{metrics['best_epoch'] + 1} / {len(metrics['epochs'])}", f"{run.seconds:.0f}"]
    print(f"row {number}: " + " | ".join(cells), flush=True)
    return {"cells": cells, "history": metrics["epochs"]}


def curves_png(outcomes: list[dict]) -> bytes:
    """Validation accuracy and cross-entropy per epoch, one line per row; rows without negatives
    are left out of the cross-entropy panel (100-1000x the others' losses would flatten them)."""
    def line(n: int, metric: str) -> Series:  # colour by row, the same in both panels
        values = [e.get(f"validation:{metric}") for e in outcomes[n]["history"]]  # null: not finite
        return Series(f"{n + 1}: " + "/".join(outcomes[n]["cells"][:3]),
                      [math.nan if v is None else v for v in values], PALETTE[n % len(PALETTE)])

    return render_curves(list(range(max(len(o["history"]) for o in outcomes))), [
        Panel("validation accuracy", [line(n, "accuracy") for n in range(len(outcomes))]),
        Panel("validation cross-entropy (rows with negatives)",
              [line(n, "cross_entropy") for n, o in enumerate(outcomes) if o["cells"][0] != "off"])],
        title="NewsArticles: document-embedding ablation", width=1200,
        note="n: negative_sampling_rate/weight sharing/comparator = row n of the table")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 articles, rows 1-2, 1 epoch; no results")
    add_results_arguments(parser, "doc_ablation")
    args = parser.parse_args(argv)
    rows, epochs = (TABLE_1[:2], 1) if args.quick else (TABLE_1, 20)  # 20: the notebook's
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="doc_ablation_") as tmp:
        counts = build_corpus(Path(tmp) / "data", *((200, 40) if args.quick else (None, 600)))
        data_seconds = conditions.elapsed()
        print(f"corpus: {json.dumps(counts)} ({data_seconds:.1f} s)", flush=True)
        outcomes = [run_row(row, Path(tmp), number, counts["vocab_size"], epochs)
                    for number, row in enumerate(rows, start=1)]
    conditions.finish()
    results = table(HEADER, [o["cells"] for o in outcomes], "l" * len(HEADER))
    print(f"\n{markdown_table(**results)}\n\nwall time {conditions.seconds:.0f} s")
    png = curves_png(outcomes)  # drawn in --quick too, so the smoke test covers it
    if not (args.no_results or args.quick):
        CURVES.write_bytes(png)
        write_results(args.results, "doc_ablation.py", sys.argv[1:] if argv is None else argv, conditions,
                      {"results": results}, {**counts, "data_seconds": f"{data_seconds:.0f}", "seed": SEED,
                       "pairs_per_article": PAIRS_PER_ARTICLE, "enc_dim": ENC_DIM, "epochs": epochs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
