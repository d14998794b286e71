"""MovieLens 100k rating regression through the real ``container/train`` (object2vec.md 8.1).

    .venv/bin/python benchmarks/movielens.py              # every configuration (~15 min)
    .venv/bin/python benchmarks/movielens.py --quick      # smoke run on a sample, seconds
    .venv/bin/python benchmarks/movielens.py --configs tuned --check-seeds --no-results
    .venv/bin/python benchmarks/movielens.py --configs autorec --set dropout=0.2  # an experiment

Data: ``ml-100k.inter`` of the installed ``recbole`` package (``o2vtools.datasets``), 10 ratings of
every user held out for validation (seeded), as AWS's ``ua`` split. Label = the rating. Framings:

* ``ids`` -- AWS's notebook: ``in0=[user_id]``, ``in1=[movie_id]`` (raw ids).
* ``item_bag`` -- ``in0=[user_id]``; ``in1`` = the movie's training ratings as a bag of user ids,
  each rater's id repeated once per star, after a constant token 0; a training record's own rating
  is left out of its bag. With ``enc1_pooling=sum`` and ``enc1_activation=sigmoid`` enc1 is
  I-AutoRec's encoder ``sigmoid(V r_i + b)``: an item-based autoencoder in Object2Vec's terms.

Each configuration trains through ``container/train``; the figures: validation RMSE from the log's
best epoch (checked against the saved model), clipped to 1-5, and a user + item bias baseline.
``prose/movielens.md`` explains them, with the search behind ``CONFIGS``. A full run (not
``--quick``, no ``--set``) writes ``results/movielens.json`` and ``movielens_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from o2vtools import datasets
from o2vtools.process import REPO, train_tree
from o2vtools.results import Conditions, add_results_arguments, fill, markdown_table, table, write_results

CURVES = REPO / "benchmarks" / "movielens_curves.png"
HELD_OUT_PER_USER = 10
VALIDATION_MSE = re.compile(
    r"#quality_metric: host=\S+, epoch=(\S+), validation mean_squared_error <loss>=(\S+)")
TRAIN_MSE = re.compile(
    r"#quality_metric: host=\S+, epoch=(\S+), train mean_squared_error <loss>=(\S+)")

FIXED = {"enc0_network": "pooled_embedding", "enc1_network": "pooled_embedding",
         "enc0_max_seq_len": "1", "enc1_max_seq_len": "1", "output_layer": "mean_squared_error",
         "num_classes": "2"}  # num_classes: passed by AWS's notebook, ignored for regression
BIAS_TOKEN = 0  # first token of every item bag (user ids start at 1): a learned bias, never empty

# The item_bag framing's network: enc1 = sigmoid(sum of the bag's rows), decoded per user by
# hadamard + concat into the linear output layer (no hidden MLP layer).
AUTOREC_ENCODER = {"enc1_pooling": "sum", "enc1_activation": "sigmoid",
                   "comparator_list": "hadamard, concat", "mlp_layers": "0"}
# Configurations tried (figures and the search behind them: prose/movielens.md).
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
    # item_bag framing: an item-based autoencoder (I-AutoRec), see the docstring; sum + sigmoid
    # are this container's opt-in extensions (enc1_pooling, enc1_activation)
    "autorec": {"enc_dim": "200", **AUTOREC_ENCODER, "optimizer": "adam", "learning_rate": "0.0005",
                "mini_batch_size": "512", "epochs": "50", "dropout": "0.1",
                "weight_decay": "0.001", "token_embedding_storage_type": "row_sparse",
                "early_stopping_patience": "4", "early_stopping_tolerance": "0.001"},
}
ITEM_BAG = {"autorec", "quick-autorec"}  # the item_bag framing's configurations (others: ids)
SEED_CHECK = ("tuned", "autorec")  # run again on --check-seeds splits
TARGETS = (0.95, 0.92)  # validation RMSE: AWS's published figure, and issue 7's
QUICK = {"enc_dim": "16", "mlp_layers": "1", "mlp_dim": "16", "mlp_activation": "relu",
         "learning_rate": "0.01", "mini_batch_size": "128", "epochs": "2"}
QUICK_CONFIGS = {"quick": QUICK, "quick-autorec": {**QUICK, **AUTOREC_ENCODER}}  # both framings


# -- data ------------------------------------------------------------------------------------------


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


class ItemBags:
    """Each movie's training ratings as ``in1`` token lists: per rater, the user id repeated once
    per star, after ``BIAS_TOKEN``."""

    def __init__(self, train: np.ndarray) -> None:
        self.chunks: dict[int, dict[int, list[int]]] = {}  # movie -> rater -> repeated user id
        for u, i, r in train:
            self.chunks.setdefault(int(i), {})[int(u)] = [int(u)] * int(r)

    def bag(self, movie: int, leave_out: int | None = None) -> list[int]:
        """Movie's bag; ``leave_out``: a user whose rating is left out (the record's own)."""
        return [BIAS_TOKEN] + [t for u, ids in self.chunks.get(movie, {}).items()
                               if u != leave_out for t in ids]

    def in1(self, rows: np.ndarray, own: bool) -> list[list[int]]:
        """The bags of ``rows``' movies; ``own``: the rows are training ratings (leave them out)."""
        return [self.bag(int(i), int(u) if own else None) for u, i, _ in rows]


def records(rows: np.ndarray, in1: list[list[int]] | None = None) -> str:
    """JSON Lines; ``in1``: each row's ``in1`` tokens (default: ``[movie_id]``)."""
    in1 = in1 or [[int(i)] for i in rows[:, 1]]
    return "".join(f'{{"in0": [{u}], "in1": {json.dumps(ids)}, "label": {float(r)}}}\n'
                   for (u, _, r), ids in zip(rows, in1))


def framed(name: str, train: np.ndarray, valid: np.ndarray
           ) -> tuple[dict[str, str], list[list[int]] | None, list[list[int]] | None]:
    """Extra hyperparameters and the train / validation ``in1`` lists (None: ``[movie_id]``) of
    configuration ``name``'s framing."""
    if name not in ITEM_BAG:
        return {}, None, None
    bags = ItemBags(train)
    train_in1, valid_in1 = bags.in1(train, own=True), bags.in1(valid, own=False)
    longest = max(len(ids) for ids in train_in1 + valid_in1)
    return ({"enc1_vocab_size": str(int(max(train[:, 0].max(), valid[:, 0].max())) + 1),
             "enc1_max_seq_len": str(longest)}, train_in1, valid_in1)


# -- one run ---------------------------------------------------------------------------------------


def saved_model_rmse(model_dir: Path, valid: np.ndarray, valid_in1: list[list[int]] | None
                     ) -> tuple[float, float]:
    """(raw, clipped to 1-5) validation RMSE of the model in ``model_dir``."""
    import torch

    from object2vec.artifact import load_artifact
    from object2vec.model.tokens import Tokens

    model = load_artifact(model_dir).model
    in1 = valid_in1 or [[int(i)] for i in valid[:, 1]]
    with torch.no_grad():
        pred = model.scores(Tokens.from_lists([[int(u)] for u in valid[:, 0]]),
                            Tokens.from_lists(in1))
    pred = pred[:, 0].numpy()
    truth = valid[:, 2].astype(np.float64)
    return rmse(pred, truth), rmse(np.clip(pred, 1, 5), truth)


def run_config(name: str, hyperparameters: dict[str, str], train: np.ndarray, valid: np.ndarray,
               workdir: Path, threads: int | None) -> dict:
    """Train configuration ``name`` through container/train; its figures from the log and from
    the saved model (which must agree: the model served is the one the log scored)."""
    base = workdir / name
    extra, train_in1, valid_in1 = framed(name, train, valid)
    channels = {"train": workdir / f"{name}-data" / "train.jsonl",
                "validation": workdir / f"{name}-data" / "validation.jsonl"}
    channels["train"].parent.mkdir(parents=True)
    channels["train"].write_text(records(train, train_in1))
    channels["validation"].write_text(records(valid, valid_in1))
    run = train_tree(base, {**hyperparameters, **extra}, channels, threads)
    log, seconds = run.log, run.seconds
    val = [float(v) for _, v in VALIDATION_MSE.findall(log)]
    trn = [float(v) for _, v in TRAIN_MSE.findall(log)]
    best = int(np.argmin(val))
    raw, clipped = saved_model_rmse(base / "model", valid, valid_in1)
    if abs(raw - math.sqrt(val[best])) > 1e-3:
        raise SystemExit(f"{name}: the saved model scores validation RMSE {raw:.4f}, the log's "
                         f"best epoch {math.sqrt(val[best]):.4f}")
    return {"name": name, "seconds": seconds, "epochs_run": len(val), "best_epoch": best,
            "val_mse": val, "train_mse": trn, "rmse_log": math.sqrt(val[best]),
            "rmse_model": raw, "rmse_model_clipped": clipped}


def curves_png(results: list[dict], baseline: float) -> bytes:
    """Train and validation RMSE per epoch of every configuration run, the bias baseline as a flat
    line (a configuration that stopped early has a shorter line)."""
    from object2vec.reporting.plot import PALETTE, Panel, Series, render_curves

    epochs = max(len(r["val_mse"]) for r in results)
    flat = [Series("bias baseline", [baseline] * epochs, (127, 127, 127))]
    panels = [Panel(f"{split} RMSE", [
        Series(r["name"], [math.sqrt(v) for v in r[key]], PALETTE[i % len(PALETTE)])
        for i, r in enumerate(results)] + (flat if split == "validation" else []))
        for split, key in (("validation", "val_mse"), ("train", "train_mse"))]
    return render_curves(list(range(epochs)), panels, title="MovieLens 100k: rating regression",
                         note="10 ratings per user held out, trained through container/train, "
                              "output_layer mean_squared_error", width=1000)


# -- report --------------------------------------------------------------------------------------


def results_table(results: list[dict]) -> dict:
    """One row per run, in run order."""
    return table(
        ["configuration", "split seed", "epochs run", "best epoch", "val RMSE",
         "val RMSE, predictions clipped to 1-5", "user+item bias baseline", "train s"],
        [[r["name"], str(r["seed"]), str(r["epochs_run"]), str(r["best_epoch"]),
          f"{r['rmse_log']:.4f}", f"{r['rmse_model_clipped']:.4f}", f"{r['baseline']:.4f}",
          f"{r['seconds']:.0f}"] for r in results], "lrrrrrrr")


def targets(results: list[dict], seed: int) -> str:
    """Whether the best configuration on the main split meets each target."""
    best = min((r for r in results if r["seed"] == seed), key=lambda r: r["rmse_log"])
    met = {True: "met", False: "**not met**"}
    return "; ".join(f"validation RMSE <= {limit}: {met[best['rmse_log'] <= limit]}"
                     for limit in TARGETS) + f" (best: {best['name']}, {best['rmse_log']:.4f})"


def configurations(names: list[str]) -> str:
    """Each configuration's hyperparameters, as the script sends them."""
    return "\n".join(fill(f"`{name}` ({'item_bag' if name in ITEM_BAG else 'ids'} framing): "
                           + ", ".join(f"`{k}` {v}" for k, v in CONFIGS[name].items()), "- ", "  ")
                      for name in names)


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter of every configuration run")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training ratings, 2 epochs, tiny model (smoke test); never "
                             "writes results")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--check-seeds", type=int, nargs="*", default=[1, 2],
                        help=f"further split seeds on which {', '.join(SEED_CHECK)} run again "
                             "(default 1 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for container/train (default 1: the model is small, "
                             "and one thread is fastest and least disturbed by other load)")
    parser.add_argument("--keep", type=Path, help="keep the SageMaker trees and logs here")
    add_results_arguments(parser, "movielens")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.no_results = args.no_results or args.quick or bool(args.set)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # load_artifact repeats the pooled_embedding warning
    loaded = datasets.load_movielens_ratings()
    ratings = np.stack([loaded.users, loaded.items, loaded.ratings.astype(np.int64)], axis=1)
    vocab = {"enc0_vocab_size": str(int(ratings[:, 0].max()) + 1),
             "enc1_vocab_size": str(int(ratings[:, 1].max()) + 1)}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    plan = [(args.seed, name) for name in args.configs]
    if args.quick:
        plan = [(args.seed, name) for name in QUICK_CONFIGS]
    else:
        plan += [(seed, name) for seed in args.check_seeds for name in args.configs
                 if name in SEED_CHECK and seed != args.seed]
    conditions = Conditions.start()
    results, counts = [], ""
    with tempfile.TemporaryDirectory(prefix="o2v-movielens-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for seed, name in plan:
            train_index, valid_index = datasets.split_per_user(loaded, HELD_OUT_PER_USER, seed)
            train, valid = ratings[train_index], ratings[valid_index]
            baseline = bias_baseline(train, valid)
            if args.quick:
                rng = np.random.default_rng(seed)
                train = train[rng.choice(len(train), 2000, replace=False)]
            if seed == args.seed and not counts:
                counts = (f"{HELD_OUT_PER_USER} ratings per user held out for validation (split "
                          f"seed {seed}), the rest for training: {len(train):,} train / "
                          f"{len(valid):,} validation ratings, vocab {vocab['enc0_vocab_size']} "
                          f"users / {vocab['enc1_vocab_size']} movies (ids as tokens); global-mean "
                          f"baseline RMSE {baseline['global_mean']:.4f}")
                print(f"# MovieLens 100k: {counts}", flush=True)
            hyperparameters = {**FIXED, **vocab, **(QUICK_CONFIGS if args.quick else CONFIGS)[name],
                               **overrides}
            shown = {k: v for k, v in hyperparameters.items()
                     if k not in FIXED and "vocab" not in k}
            print(f"\n## {name}, split seed {seed}: {json.dumps(shown)}", flush=True)
            res = run_config(name, hyperparameters, train, valid, workdir / f"seed{seed}",
                             args.threads)
            res.update(seed=seed, baseline=baseline["bias"])
            results.append(res)
            print("validation MSE per epoch: " + ", ".join(f"{v:.4f}" for v in res["val_mse"]))
            print("train MSE per epoch:      " + ", ".join(f"{v:.4f}" for v in res["train_mse"]))
            print(f"best epoch {res['best_epoch']} of {res['epochs_run']}; validation RMSE "
                  f"{res['rmse_log']:.4f} (log), {res['rmse_model']:.4f} (saved model), "
                  f"{res['rmse_model_clipped']:.4f} (saved model, clipped 1-5); bias baseline "
                  f"{res['baseline']:.4f}; {res['seconds']:.0f} s", flush=True)
    conditions.finish()
    results_tbl = results_table(results)
    print(f"\n{markdown_table(**results_tbl)}\n\n{targets(results, args.seed)}")
    main_split = [r for r in results if r["seed"] == args.seed]
    png = curves_png(main_split, main_split[0]["baseline"])  # drawn in --quick too (smoke test)
    if not args.no_results:
        CURVES.write_bytes(png)
        drift = max(abs(r["rmse_model"] - r["rmse_log"]) for r in results)
        write_results(args.results, "movielens.py", args.argv, conditions,
                      {"results": results_tbl}, {
            "counts": counts, "drift": f"{drift:.1e}", "seed": args.seed,
            "targets": targets(results, args.seed),
            "fixed": ", ".join(f"`{k}` {v}" for k, v in FIXED.items()),
            "configurations": configurations(list(dict.fromkeys(r["name"] for r in results)))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
