"""MovieLens 100k rating regression through the real ``container/train`` (object2vec.md 8.1).

    .venv/bin/python benchmarks/movielens.py                      # every configuration, and the PNG
    .venv/bin/python benchmarks/movielens.py --quick              # smoke run on a sample, seconds
    .venv/bin/python benchmarks/movielens.py --configs tuned      # named configurations only
    .venv/bin/python benchmarks/movielens.py --set enc_dim=128 --set weight_decay=0.002

Data: ``ml-100k.inter`` from the installed ``recbole`` package (located with ``find_spec``, never
imported; datasets.md section 2). Split as AWS's ``ua`` split is made: 10 ratings of every user held
out for validation (seeded), the rest for training -> 90,570 train / 9,430 validation ratings.
Framing as in AWS's notebook: ``in0=[user_id]``, ``in1=[movie_id]`` (raw ids; vocab 944 / 1683),
label = rating as a float, both encoders ``pooled_embedding``, ``output_layer=mean_squared_error``.

For each configuration the script writes a SageMaker tree to a temporary directory, runs
``container/train`` as a subprocess, and reports:

* validation RMSE = sqrt(best ``validation:mean_squared_error`` metric line of the log);
* the same recomputed from ``model/`` with ``load_artifact`` (raw predictions, and clipped to 1-5);
* a regularised user + item bias baseline on the same split (datasets.md: lambda_item 25,
  lambda_user 10, 10 alternating sweeps, clipped to 1-5) and the global mean.

Target: validation RMSE <= 0.95 (AWS reported MSE ~0.91, RMSE ~0.95, on its ``ua`` split).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "container" / "train"
CURVES = REPO / "benchmarks" / "movielens_curves.png"
HELD_OUT_PER_USER = 10
VALIDATION_MSE = re.compile(
    r"#quality_metric: host=\S+, epoch=(\S+), validation mean_squared_error <loss>=(\S+)")
TRAIN_MSE = re.compile(
    r"#quality_metric: host=\S+, epoch=(\S+), train mean_squared_error <loss>=(\S+)")

FIXED = {"enc0_network": "pooled_embedding", "enc1_network": "pooled_embedding",
         "enc0_max_seq_len": "1", "enc1_max_seq_len": "1", "output_layer": "mean_squared_error",
         "num_classes": "2"}  # num_classes: passed by AWS's notebook, ignored for regression

# Configurations tried (figures and the rest of the search in benchmarks/RESULTS.md).
CONFIGS: dict[str, dict[str, str]] = {
    # AWS's notebook (section 8.1), unchanged
    "aws": {"enc_dim": "1024", "mlp_layers": "1", "mlp_dim": "256", "mlp_activation": "tanh",
            "comparator_list": "hadamard, concat, abs_diff", "optimizer": "adam",
            "learning_rate": "0.001", "mini_batch_size": "64", "epochs": "20", "dropout": "0.0",
            "weight_decay": "0", "early_stopping_patience": "3",
            "early_stopping_tolerance": "0.01"},
    # first guess: smaller encodings, ReLU MLP, strong dropout (dropout on the encodings hurts here)
    "mlp-dropout": {"enc_dim": "64", "mlp_layers": "1", "mlp_dim": "256", "mlp_activation": "relu",
                    "comparator_list": "hadamard, concat, abs_diff", "optimizer": "adam",
                    "learning_rate": "0.001", "mini_batch_size": "256", "epochs": "12",
                    "dropout": "0.5", "weight_decay": "0", "early_stopping_patience": "3",
                    "early_stopping_tolerance": "0.01"},
    # the tuned one: a biased matrix factorisation in Object2Vec terms -- hadamard gives the
    # weighted dot product, concat the user and item biases, no hidden layer; row_sparse makes
    # weight decay lazy (only the rows in the batch decay), which regularises rare users and movies
    # the way per-rating L2 does in classic matrix factorisation
    "tuned": {"enc_dim": "128", "mlp_layers": "0", "comparator_list": "hadamard, concat",
              "optimizer": "adam", "learning_rate": "0.01", "mini_batch_size": "512",
              "epochs": "40", "dropout": "0.0", "weight_decay": "0.0015",
              "token_embedding_storage_type": "row_sparse", "early_stopping_patience": "5",
              "early_stopping_tolerance": "0.001"},
}
QUICK = {"enc_dim": "16", "mlp_layers": "1", "mlp_dim": "16", "mlp_activation": "relu",
         "learning_rate": "0.01", "mini_batch_size": "128", "epochs": "2"}


# -- data ------------------------------------------------------------------------------------------


def ratings_file() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("recbole is not installed: pip install --no-deps -r requirements-data.txt")
    root = Path(spec.submodule_search_locations[0])
    return root / "dataset_example" / "ml-100k" / "ml-100k.inter"


def load_ratings() -> np.ndarray:
    """(100000, 3) int array: user, item, rating (the timestamp column is dropped)."""
    table = np.loadtxt(ratings_file(), delimiter="\t", skiprows=1, dtype=np.float64)
    return table[:, :3].astype(np.int64)


def split(ratings: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, validation): ``HELD_OUT_PER_USER`` random ratings of each user."""
    order = np.random.default_rng(seed).permutation(len(ratings))
    users = ratings[order, 0]
    by_user = np.argsort(users, kind="stable")  # random order kept inside each user
    sorted_users = users[by_user]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.arange(len(ratings)) - first  # position of each rating among its user's ratings
    validation = np.zeros(len(ratings), dtype=bool)
    validation[order[by_user[rank < HELD_OUT_PER_USER]]] = True
    return ~validation, validation


def bias_baseline(train: np.ndarray, valid: np.ndarray, lam_item: float = 25.0,
                  lam_user: float = 10.0, sweeps: int = 10) -> dict[str, float]:
    """Global mean and regularised user + item biases (datasets.md), RMSE on ``valid``."""
    n_users, n_items = int(max(train[:, 0].max(), valid[:, 0].max())) + 1, \
        int(max(train[:, 1].max(), valid[:, 1].max())) + 1
    u, i, r = train[:, 0], train[:, 1], train[:, 2].astype(np.float64)
    mu = r.mean()
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(sweeps):
        res = r - mu - bu[u]
        bi = np.bincount(i, res, n_items) / (np.bincount(i, minlength=n_items) + lam_item)
        res = r - mu - bi[i]
        bu = np.bincount(u, res, n_users) / (np.bincount(u, minlength=n_users) + lam_user)
    truth = valid[:, 2].astype(np.float64)
    pred = np.clip(mu + bu[valid[:, 0]] + bi[valid[:, 1]], 1, 5)
    return {"global_mean": rmse(np.full_like(truth, mu), truth), "bias": rmse(pred, truth)}


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64) - truth) ** 2)))


def records(rows: np.ndarray) -> str:
    return "".join(f'{{"in0": [{u}], "in1": [{i}], "label": {float(r)}}}\n' for u, i, r in rows)


def write_tree(base: Path, hyperparameters: dict[str, str], train: np.ndarray,
               valid: np.ndarray) -> None:
    cfg = base / "input" / "config"
    cfg.mkdir(parents=True)
    (cfg / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (cfg / "inputdataconfig.json").write_text(json.dumps(
        {c: {"ContentType": "application/jsonlines", "TrainingInputMode": "File",
             "S3DistributionType": "FullyReplicated"} for c in ("train", "validation")}))
    for name, rows in (("train", train), ("validation", valid)):
        (base / "input" / "data" / name).mkdir(parents=True)
        (base / "input" / "data" / name / f"{name}.jsonl").write_text(records(rows))


# -- one run ---------------------------------------------------------------------------------------


def run_container(base: Path, log_path: Path, threads: int | None = None) -> tuple[int, str, float]:
    """Run container/train on ``base``; returns (exit status, log text, seconds)."""
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run([str(TRAIN)], cwd=base, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    return code, log_path.read_text(), time.perf_counter() - start


def saved_model_rmse(model_dir: Path, valid: np.ndarray) -> tuple[float, float]:
    """(raw, clipped to 1-5) validation RMSE of the model in ``model_dir``."""
    import torch

    from object2vec.artifact import load_artifact
    from object2vec.model.tokens import Tokens

    model = load_artifact(model_dir).model
    users = torch.from_numpy(valid[:, 0].copy())
    items = torch.from_numpy(valid[:, 1].copy())
    ones = torch.ones(len(valid), dtype=torch.long)
    offsets = torch.arange(len(valid), dtype=torch.long)
    with torch.no_grad():
        pred = model.scores(Tokens(users, offsets, ones), Tokens(items, offsets, ones))
    pred = pred[:, 0].numpy()
    truth = valid[:, 2].astype(np.float64)
    return rmse(pred, truth), rmse(np.clip(pred, 1, 5), truth)


def run_config(name: str, hyperparameters: dict[str, str], train: np.ndarray, valid: np.ndarray,
               workdir: Path, threads: int | None) -> dict:
    base = workdir / name
    write_tree(base, hyperparameters, train, valid)
    code, log, seconds = run_container(base, workdir / f"{name}.log", threads)
    if code != 0:
        tail = "\n".join(log.splitlines()[-15:])
        raise SystemExit(f"container/train failed for {name} (exit {code}):\n{tail}")
    val = [float(v) for _, v in VALIDATION_MSE.findall(log)]
    trn = [float(v) for _, v in TRAIN_MSE.findall(log)]
    best = int(np.argmin(val))
    raw, clipped = saved_model_rmse(base / "model", valid)
    return {"name": name, "seconds": seconds, "epochs_run": len(val), "best_epoch": best,
            "val_mse": val, "train_mse": trn, "rmse_log": math.sqrt(val[best]),
            "rmse_model": raw, "rmse_model_clipped": clipped}


def curves_png(results: list[dict], baseline: float) -> bytes:
    """Train and validation RMSE per epoch of every configuration run, the bias baseline as a flat
    line (a configuration that stopped early has a shorter line)."""
    from object2vec.reporting.plot import PALETTE, Panel, Series, render_curves

    epochs = max(len(r["val_mse"]) for r in results)

    def rmse_per_epoch(mse: list[float]) -> list[float]:
        return [math.sqrt(v) for v in mse]

    panels = [Panel(f"{split} RMSE", [
        Series(r["name"], rmse_per_epoch(r[key]), PALETTE[i % len(PALETTE)])
        for i, r in enumerate(results)] + ([Series("bias baseline", [baseline] * epochs,
                                                     (127, 127, 127))] if split == "validation" else []))
        for split, key in (("validation", "val_mse"), ("train", "train_mse"))]
    return render_curves(list(range(epochs)), panels, title="MovieLens 100k: rating regression",
                         note="10 ratings per user held out, trained through container/train, "
                              "output_layer mean_squared_error", width=1000)


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS),
                        help="configurations to run (default: all, about 2.5 minutes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter of every configuration run")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training ratings, 2 epochs, tiny model (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for container/train (default 1: the model is tiny, "
                             "and one thread is fastest and least disturbed by other load)")
    parser.add_argument("--keep", type=Path, help="keep the SageMaker trees and logs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # load_artifact repeats the pooled_embedding warning
    threads = args.threads

    ratings = load_ratings()
    train_mask, valid_mask = split(ratings, args.seed)
    train, valid = ratings[train_mask], ratings[valid_mask]
    baseline = bias_baseline(train, valid)
    vocab = {"enc0_vocab_size": str(int(ratings[:, 0].max()) + 1),
             "enc1_vocab_size": str(int(ratings[:, 1].max()) + 1)}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    runs = {name: {**FIXED, **vocab, **CONFIGS[name], **overrides} for name in args.configs}
    if args.quick:
        rng = np.random.default_rng(args.seed)
        train = train[rng.choice(len(train), 2000, replace=False)]
        runs = {"quick": {**FIXED, **vocab, **QUICK, **overrides}}
    print(f"# MovieLens 100k: {len(train):,} train / {len(valid):,} validation ratings "
          f"({HELD_OUT_PER_USER} per user held out, seed {args.seed}); vocab "
          f"{vocab['enc0_vocab_size']} / {vocab['enc1_vocab_size']}", flush=True)
    print(f"baseline on this split: global mean RMSE {baseline['global_mean']:.4f}, user+item bias "
          f"RMSE {baseline['bias']:.4f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="o2v-movielens-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = []
        for name, hyperparameters in runs.items():
            shown = {k: v for k, v in hyperparameters.items()
                     if k not in FIXED and "vocab" not in k}
            print(f"\n## {name}: {json.dumps(shown)}", flush=True)
            res = run_config(name, hyperparameters, train, valid, workdir, threads)
            results.append(res)
            print("validation MSE per epoch: " + ", ".join(f"{v:.4f}" for v in res["val_mse"]))
            print("train MSE per epoch:      " + ", ".join(f"{v:.4f}" for v in res["train_mse"]))
            print(f"best epoch {res['best_epoch']} of {res['epochs_run']}; validation RMSE "
                  f"{res['rmse_log']:.4f} (log), {res['rmse_model']:.4f} (saved model), "
                  f"{res['rmse_model_clipped']:.4f} (saved model, clipped 1-5); "
                  f"{res['seconds']:.0f} s", flush=True)

    print("\n| configuration | epochs run | best epoch | val RMSE (log) | val RMSE (model) "
          "| clipped | bias baseline | train s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['name']} | {r['epochs_run']} | {r['best_epoch']} | {r['rmse_log']:.4f} | "
              f"{r['rmse_model']:.4f} | {r['rmse_model_clipped']:.4f} | {baseline['bias']:.4f} | "
              f"{r['seconds']:.0f} |")
    png = curves_png(results, baseline["bias"])  # drawn in --quick too: the smoke test covers it
    if not args.quick:
        CURVES.write_bytes(png)
        print(f"\ncurves written to {CURVES.relative_to(REPO)}")
        best = min(r["rmse_log"] for r in results)
        print(f"\ntarget validation RMSE <= 0.95: {'met' if best <= 0.95 else 'NOT met'} "
              f"(best {best:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
