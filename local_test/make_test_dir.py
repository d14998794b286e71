#!/usr/bin/env python3
"""Generate a fresh SageMaker ``/opt/ml`` tree for MovieLens 100k rating regression.

    python local_test/make_test_dir.py --quick          # local_test/test_dir, trains in seconds
    python local_test/make_test_dir.py --epochs 8       # the full data (90,570 / 9,430 ratings)
    local_test/train_local.sh --no-docker               # then train on it

Layout (as SageMaker mounts it at ``/opt/ml``)::

    <dir>/input/config/hyperparameters.json   every value a string, as SageMaker sends them
    <dir>/input/config/inputdataconfig.json   train + validation, application/jsonlines, File mode
    <dir>/input/config/resourceconfig.json    current_host algo-1, hosts [algo-1], eth0
    <dir>/input/data/train/train.jsonl        {"in0": [user], "in1": [movie], "label": rating}
    <dir>/input/data/validation/validation.jsonl   10 held-out ratings per user
    <dir>/model/  <dir>/output/data/          empty, for the training job

Hyperparameters follow AWS's MovieLens regression notebook (object2vec.md section 8.1: pooled
embeddings, 1 tanh MLP layer, adam 0.001, MSE output, early stopping 3 / 0.01) with the sizes cut
for a small CPU: ``enc_dim`` 1024 -> 128 and ``mini_batch_size`` 64 -> 256 (fewer, cheaper steps).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import datasets
from o2vtools.tree import resource_config, write_config

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "test_dir"
DEFAULT_EPOCHS = 8
QUICK_EPOCHS = 2
QUICK_USERS = 150  # users 1..150: about 15k ratings, a couple of seconds per epoch

# AWS's notebook values, kept as given where a CPU copes with them; ids are raw, so the vocab sizes
# come from the whole dataset even when only some users are written.
NOTEBOOK_HYPERPARAMETERS: dict[str, object] = {
    "_kvstore": "device",  # MXNet knobs the notebook sends; the container accepts and ignores them
    "_num_gpus": "auto",
    "_num_kv_servers": "auto",
    "bucket_width": 0,
    "early_stopping_patience": 3,
    "early_stopping_tolerance": 0.01,
    "enc0_layers": "auto",
    "enc0_max_seq_len": 1,
    "enc0_network": "pooled_embedding",
    "enc0_token_embedding_dim": 300,  # overridden to enc_dim for pooled_embedding (warning logged)
    "enc1_layers": "auto",
    "enc1_max_seq_len": 1,
    "enc1_network": "pooled_embedding",
    "enc1_token_embedding_dim": 300,
    "enc_dim": 128,  # notebook: 1024
    "learning_rate": 0.001,
    "mini_batch_size": 256,  # notebook: 64
    "mlp_activation": "tanh",
    "mlp_dim": 256,
    "mlp_layers": 1,
    "num_classes": 2,  # ignored for regression, sent by the notebook anyway
    "optimizer": "adam",
    "output_layer": "mean_squared_error",
}
QUICK_OVERRIDES = {"enc_dim": 32, "mlp_dim": 32, "mini_batch_size": 128}


def hyperparameters(vocab_sizes: tuple[int, int], epochs: int, quick: bool) -> dict[str, str]:
    """The job's hyperparameters, every value a string (``str(v)``, as the SDK's Estimator
    sends them)."""
    hp = dict(NOTEBOOK_HYPERPARAMETERS)
    if quick:
        hp.update(QUICK_OVERRIDES)
    hp.update(enc0_vocab_size=vocab_sizes[0], enc1_vocab_size=vocab_sizes[1], epochs=epochs)
    return {key: str(value) for key, value in sorted(hp.items())}


def prepare_dir(directory: Path) -> None:
    """Empty ``directory`` for a fresh tree. Refuses a non-empty folder that is not a SageMaker
    tree, so a mistyped ``--dir`` cannot delete unrelated files."""
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"{directory} exists and is not a directory")
        entries = list(directory.iterdir())
        if entries and not (directory / "input" / "config").is_dir():
            raise ValueError(f"{directory} is not empty and holds no input/config/: refusing to "
                             f"delete it; pass an empty or new --dir")
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def movielens_channels(max_users: int | None, seed: int = 0) -> dict[str, list[dict]]:
    """Train (shuffled) and validation records, optionally only of users ``1..max_users``."""
    ratings = datasets.load_movielens_ratings()
    if max_users is not None:
        ratings = ratings.subset(ratings.users <= max_users)
    train, validation = datasets.split_per_user(ratings, datasets.VALIDATION_PER_USER, seed)
    return {"train": datasets.shuffled(datasets.rating_records(ratings.subset(train)), seed),
            "validation": datasets.rating_records(ratings.subset(validation))}


def make_tree(base: Path, epochs: int, quick: bool = False, max_users: int | None = None,
              seed: int = 0, resource: dict[str, object] | None = None) -> dict[str, int]:
    """Write a fresh MovieLens tree under ``base``; returns the record count per channel."""
    prepare_dir(base)
    vocab_sizes = datasets.load_movielens_ratings().vocab_sizes  # raw ids: whole-dataset sizes
    channels = movielens_channels(max_users, seed)
    write_config(base, hyperparameters(vocab_sizes, epochs, quick), list(channels),
                 resource or resource_config())
    return {name: datasets.write_jsonl(base / "input" / "data" / name / f"{name}.jsonl", records)
            for name, records in channels.items()}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"tree to (re)create (default {DEFAULT_DIR})")
    parser.add_argument("--quick", action="store_true",
                        help=f"users 1..{QUICK_USERS}, small model, {QUICK_EPOCHS} epochs: seconds")
    parser.add_argument("--epochs", type=positive_int,
                        help=f"epochs (default {DEFAULT_EPOCHS}, {QUICK_EPOCHS} with --quick)")
    parser.add_argument("--users", type=positive_int,
                        help=f"only users 1..N (default all; {QUICK_USERS} with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="split and shuffle seed (default 0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    users = args.users or (QUICK_USERS if args.quick else None)
    base = args.dir.resolve()
    try:
        counts = make_tree(base, epochs, args.quick, users, args.seed)
    except (ValueError, OSError, datasets.DatasetError) as exc:
        print(f"make_test_dir.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {base}: " + ", ".join(f"{n} {c} records" for n, c in counts.items())
          + f", {epochs} epoch(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
