#!/usr/bin/env python3
"""End-to-end demo: text in and neighbours out on NewsArticles, then ratings, recommendations and
similar movies on MovieLens 100k -- each trained through ``container/train`` and queried through
``container/serve`` like a deployed endpoint.

    make demo                                     # both parts: about 35 s on 2 CPUs
    .venv/bin/python local_test/demo.py --quick   # small subsets and models

Steps, each with a deadline; any failure prints the reason and exits 1:

1. NewsArticles (``.demo/news``): (sentence, rest of its article) pairs as raw text, the articles
   as the ``catalog`` channel; the job trains its own tokenizer and indexes the articles. Typed
   queries get their nearest articles from ``/invocations`` (``top_k``).
2. MovieLens (``.demo/movielens``): 90,570 train / 9,430 validation ratings, the movies as the
   catalog (``in1``: the movie id). Predicted vs actual ratings, a user's recommendations
   (``top_k`` with ``rerank``: the nearest movies by embedding, ordered by predicted rating) and
   the nearest movies of well-known ones (``top_k`` on ``in1``).
3. Each server is stopped with SIGTERM (SIGKILL if it does not exit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import make_test_dir
import numpy as np
from o2vtools import process
from o2vtools.tree import resource_config, write_config

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / ".demo" / "movielens"  # .demo/compose is docker/make_compose_tree.py's
NEWS_DIR = REPO / ".demo" / "news"
NEWS_ARTICLES = 1500  # articles in the news demo (--quick: 300); the catalog holds them all
NEWS_QUERIES = ("stock markets fell after the central bank raised interest rates",
                "the president met foreign leaders at the summit",
                "the team won the championship final", "a new smartphone with a better camera")
NEWS_HYPERPARAMETERS = {  # the document notebook's shape with this container's retrieval extensions
    "enc0_network": "pooled_embedding", "enc1_network": "enc0", "tied_token_embedding_weight": "true",
    "enc0_tokenizer": "wordlevel", "enc0_vocab_size": "20000", "enc0_max_seq_len": "400",
    "enc_dim": "256", "comparator_list": "hadamard", "mlp_layers": "1", "mlp_dim": "256",
    "negative_sampling_rate": "1", "token_embedding_storage_type": "row_sparse", "optimizer": "adam",
    "learning_rate": "0.003", "mini_batch_size": "256", "epochs": "3", "early_stopping_patience": "2",
    "in_batch_softmax_weight": "1", "token_weighting": "idf"}
TRAIN = REPO / "container" / "train"
DEMO_EPOCHS = 8  # early stopping (patience 3) usually ends it after 4-6 epochs, ~5 s each on 2 CPUs
TRAIN_DEADLINE_S = 900
REQUEST_TIMEOUT_S = 60
MIN_RATINGS_FOR_NEIGHBOURS = 50  # rarely rated movies have barely trained embeddings
FAMOUS_MOVIES = (50, 1, 195, 127, 100)  # Star Wars, Toy Story, Terminator, Godfather, Fargo
DEMO_USERS = (1, 42, 405)

METRIC = re.compile(r"#quality_metric: host=(?P<host>\S+), (?:epoch=(?P<epoch>\S+), )?"
                    r"(?P<split>train|validation|test) (?P<name>\S+) "
                    r"<(?:loss|score)>=(?P<value>\S+)")
THROUGHPUT = re.compile(r"#throughput_metric: host=\S+, train throughput=(\S+) records/second")


class DemoError(RuntimeError):
    """A step failed; the message says which and why."""


@dataclass
class TrainMetrics:
    """What the metric lines of a training log said."""

    epochs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # "split name" -> ...
    final: dict[str, float] = field(default_factory=dict)  # test metrics, no epoch
    throughput: list[float] = field(default_factory=list)

    def add_line(self, line: str) -> None:
        """Record the metric in ``line``, if it holds one."""
        if m := METRIC.search(line):
            key, value = f"{m['split']} {m['name']}", float(m["value"])
            if m["epoch"] is None:
                self.final[key] = value
            else:
                self.epochs.setdefault(key, []).append((int(m["epoch"]), value))
        elif m := THROUGHPUT.search(line):
            self.throughput.append(float(m[1]))


# --------------------------------------------------------------------------------------------------
# Processes


def training_env(base: Path) -> dict[str, str]:
    """:func:`container_env` plus one OpenMP thread unless the caller chose a number.

    Measured on a 2-CPU machine shared with other jobs: torch's default of one spinning OpenMP
    thread per core trained this model at 0.4-7k records/s, one thread at 30-55k; on idle CPUs the
    two are about equal (the model is embedding lookups and small matrices)."""
    env = process.container_env(base)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def check_executable(path: Path) -> None:
    """Raise :class:`DemoError` unless ``path`` is an executable file."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise DemoError(f"{path} is missing or not executable")


def run_training(base: Path, deadline_s: float = TRAIN_DEADLINE_S) -> TrainMetrics:
    """Run ``container/train`` on ``base``, streaming its log and collecting its metric lines.

    Raises:
        DemoError: non-zero exit (with ``output/failure``), or the deadline passed.
    """
    check_executable(TRAIN)
    metrics = TrainMetrics()
    timed_out = threading.Event()
    with subprocess.Popen([str(TRAIN)], env=training_env(base), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:

        def expire() -> None:  # a watchdog: a silent hang must not block the loop below forever
            timed_out.set()
            stop_process(proc, grace_s=10.0)

        watchdog = threading.Timer(deadline_s, expire)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(f"  | {line}", end="", flush=True)
                metrics.add_line(line)
            code = proc.wait()
        finally:
            watchdog.cancel()
    if timed_out.is_set():
        raise DemoError(f"training did not finish within {deadline_s:.0f} s (stopped)")
    if code != 0:
        failure = base / "output" / "failure"
        reason = (failure.read_text(errors="replace").strip() if failure.is_file()
                  else "(no failure file)")
        raise DemoError(f"container/train exited with status {code}: {reason[:1024]}")
    return metrics


def stop_process(proc: subprocess.Popen, grace_s: float) -> int | None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --------------------------------------------------------------------------------------------------
# Requests


def invoke(url: str, instances: list[dict]) -> list[dict]:
    """POST ``{"instances": ...}`` as application/json; returns the ``predictions`` list.

    Raises:
        DemoError: HTTP error, unreachable server, or a malformed answer.
    """
    body = json.dumps({"instances": instances}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise DemoError(f"/invocations answered HTTP {exc.code}: "
                        f"{exc.read().decode(errors='replace')[:500]}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DemoError(f"/invocations failed: {exc}") from exc
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != len(instances):
        raise DemoError(f"expected {len(instances)} predictions, got: {str(answer)[:300]}")
    return predictions


def predict_ratings(url: str, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Predicted rating of each (user, movie) pair."""
    predictions = invoke(url, [{"in0": [u], "in1": [m]} for u, m in pairs])
    return np.array([p["scores"][0] for p in predictions], dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Report


def print_header(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def report_training(base: Path, metrics: TrainMetrics, seconds: float) -> None:
    """Where the model went and what the validation metrics said."""
    print_header(f"training finished in {seconds:.0f} s")
    for path in sorted((base / "model").iterdir()):
        print(f"  model file: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    validation = metrics.epochs.get("validation mean_squared_error", [])
    if not validation:
        raise DemoError("the training log held no validation mean_squared_error metric lines")
    for epoch, value in validation:
        print(f"  epoch {epoch}: validation MSE {value:.4f} (RMSE {value ** 0.5:.4f})")
    best_epoch, best = min(validation, key=lambda ev: ev[1])
    print(f"  best: epoch {best_epoch}, validation MSE {best:.4f} / RMSE {best ** 0.5:.4f} "
          f"(AWS's notebook: MSE ~0.91; user+item bias baseline: RMSE ~0.95)")
    if metrics.throughput:
        print(f"  train throughput: {np.median(metrics.throughput):,.0f} records/s (median)")


def report_ratings(url: str, validation: datasets.Ratings, titles: dict[int, str]) -> None:
    """Predicted vs actual ratings for a few held-out pairs of a few users."""
    print_header("predicted ratings for held-out (user, movie) pairs")
    picks = np.concatenate([np.flatnonzero(validation.users == u)[:4] for u in DEMO_USERS])
    users, movies = validation.users[picks].tolist(), validation.items[picks].tolist()
    pairs = list(zip(users, movies, strict=True))
    predicted = predict_ratings(url, pairs)
    actuals = validation.ratings[picks]
    for (user, movie), actual, guess in zip(pairs, actuals, predicted, strict=True):
        print(f"  user {user:>3}  {titles.get(movie, movie)[:44]:<44}  actual {actual:.0f}  "
              f"predicted {guess:.2f}")


def neighbours(url: str, instances: list[dict]) -> list[list[tuple[object, float]]]:
    """``top_k`` instances -> their ``[(id, score), ...]``, best first."""
    return [[(n["id"], n["score"]) for n in p["neighbors"]] for p in invoke(url, instances)]


def report_recommendations(url: str, ratings: datasets.Ratings, titles: dict[int, str],
                           user: int = DEMO_USERS[0], k: int = 5) -> None:
    """A user's top movies: the catalog's nearest by embedding, re-ranked by predicted rating."""
    seen = set(ratings.items[ratings.users == user].tolist())
    [found] = neighbours(url, [{"in0": [user], "top_k": k + len(seen), "rerank": True}])
    print_header(f"recommended to user {user} (top_k with rerank: the movies nearest by embedding, "
                 f"ordered by the model's predicted rating; the {len(seen)} they rated left out)")
    for movie, score in [(m, s) for m, s in found if m not in seen][:k]:
        print(f"  {score:.2f}  {titles.get(movie, movie)}")


def report_similar_movies(url: str, titles: dict[int, str], popular: list[int]) -> None:
    """Nearest movies of a few well-known ones: top_k over the catalog by cosine of enc1."""
    print_header("nearest movies (top_k on in1: cosine of the movies' enc1 embeddings)")
    print("  (a few CPU epochs of a small model: expect loose neighbourhoods; AWS's notebook used "
          "enc_dim 1024 on a GPU)")
    queries = [m for m in FAMOUS_MOVIES if m in popular]
    for query, found in zip(queries, neighbours(url, [{"in1": [m], "top_k": 5} for m in queries])):
        others = ", ".join(f"{titles.get(movie, movie)} ({score:.2f})" for movie, score in found
                           if movie != query)
        print(f"  {titles[query]}\n      -> {others}")


def news_demo(base: Path, quick: bool) -> None:
    """Text in, neighbours out: train on raw sentence/article text with the articles as the
    catalog, then ask for the articles nearest to a few typed queries."""
    articles = datasets.load_news_articles()
    articles = datasets.sample([a for a in articles if a.title], 300 if quick else NEWS_ARTICLES)
    pairs = datasets.positive_pairs(articles, 2 if quick else 4)
    print_header(f"writing the NewsArticles text tree to {base}")
    make_test_dir.prepare_dir(base)
    hp = {**NEWS_HYPERPARAMETERS, **({"enc_dim": "64", "epochs": "1"} if quick else {})}
    write_config(base, hp, ["train", "catalog"], resource_config())
    data = base / "input" / "data"
    datasets.write_jsonl(data / "train" / "train.jsonl", datasets.shuffled(
        [{"label": 1, "in0": sentence, "in1": document} for sentence, document in pairs]))
    datasets.write_jsonl(data / "catalog" / "articles.jsonl",  # titles repeat: ids do not
                         [{"id": a.article_id, "in1": a.text} for a in articles])
    print(f"  {len(pairs)} (sentence, rest of article) pairs as raw text, {len(articles)} articles "
          f"in the catalog; no vocabulary file: the job trains a wordlevel tokenizer")
    print_header("container/train (NewsArticles)")
    start = time.monotonic()
    run_training(base)
    print_header(f"training finished in {time.monotonic() - start:.0f} s")
    with serving(base) as url:
        found = neighbours(url, [{"in0": query, "top_k": 3} for query in NEWS_QUERIES])
        print_header(f"nearest articles to typed queries (top_k over the catalog's {len(articles)} "
                     f"articles: cosine of enc0(query) and the articles' embeddings)")
        titles = {a.article_id: a.title for a in articles}
        for query, best in zip(NEWS_QUERIES, found):
            print(f"  \"{query}\"")
            for article, score in best:
                print(f"      {score:.2f}  {titles[article][:90]}")


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help=f"tree (default {DEMO_DIR})")
    parser.add_argument("--news-dir", type=Path, default=NEWS_DIR, help=f"tree (default {NEWS_DIR})")
    parser.add_argument("--epochs", type=make_test_dir.positive_int, default=None,
                        help=f"epochs (default {DEMO_EPOCHS}; early stopping may end sooner)")
    parser.add_argument("--quick", action="store_true",
                        help="the small subset and model of make_test_dir.py --quick")
    return parser.parse_args(argv)


@contextlib.contextmanager
def serving(base: Path) -> Iterator[str]:
    """``container/serve`` on ``base`` with one worker at a free port, ready; its URL. Stopped
    afterwards (SIGTERM to its process group)."""
    print_header(f"starting container/serve (log: {base / 'serve.log'})")
    start = time.monotonic()
    with process.serving(base, {"MODEL_SERVER_WORKERS": "1"}) as (port, _):
        print(f"  http://127.0.0.1:{port}: /ping answered 200 after {time.monotonic() - start:.1f} s")
        yield f"http://127.0.0.1:{port}"
    print_header("server stopped (SIGTERM)")


def serve_and_query(base: Path, train: datasets.Ratings, validation: datasets.Ratings) -> None:
    """Start the server, run the reports, stop the server."""
    titles = datasets.load_movielens_titles()
    counts = np.bincount(train.items)
    popular = [int(m) for m in np.flatnonzero(counts >= MIN_RATINGS_FOR_NEIGHBOURS)]
    with serving(base) as url:
        report_ratings(url, validation, titles)
        report_recommendations(url, datasets.load_movielens_ratings(), titles)
        report_similar_movies(url, titles, popular)


def run_demo(args: argparse.Namespace) -> None:
    """All the steps; raises :class:`DemoError` (or a dataset/OS error) on the first failure."""
    news_demo(args.news_dir.resolve(), args.quick)
    base = args.dir.resolve()
    epochs = args.epochs or (make_test_dir.QUICK_EPOCHS if args.quick else DEMO_EPOCHS)
    users = make_test_dir.QUICK_USERS if args.quick else None
    print_header(f"writing the MovieLens 100k SageMaker tree to {base}")
    counts = make_test_dir.make_tree(base, epochs, quick=args.quick, max_users=users)
    titles = datasets.load_movielens_titles()  # the catalog: every movie (titles repeat: ids do not)
    counts["catalog"] = datasets.write_jsonl(base / "input" / "data" / "catalog" / "movies.jsonl",
                                             [{"id": m, "in1": [m]} for m in sorted(titles)])
    print("  " + ", ".join(f"{name}: {n} {'movies' if name == 'catalog' else 'ratings'}"
                           for name, n in counts.items())
          + f"; {epochs} epochs (early stopping: patience 3, tolerance 0.01)")
    print_header("container/train")
    start = time.monotonic()
    metrics = run_training(base)
    report_training(base, metrics, time.monotonic() - start)
    ratings = datasets.load_movielens_ratings()
    if users is not None:
        ratings = ratings.subset(ratings.users <= users)
    train_idx, validation_idx = datasets.split_per_user(ratings)  # the split make_tree wrote
    serve_and_query(base, ratings.subset(train_idx), ratings.subset(validation_idx))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: 0 on success, 1 with a message on failure."""
    args = parse_args(argv)
    start = time.monotonic()
    try:
        run_demo(args)
    except (DemoError, datasets.DatasetError, ValueError, OSError, RuntimeError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
