#!/usr/bin/env python3
"""The GPU check (README.md, "GPU check"): the CUDA paths the CPU-only suite never runs, in minutes on
one GPU; figures, versions and each step's time and verdict go to one JSON file. Steps: unit_tests (the
tests' CUDA cases), train (container/train, dense and row_sparse), throughput (training samples/s by
vocabulary), predictor (embeddings/s), serve (container/serve with its worker on the GPU).

    python3 tools/gpu_check.py --out $OUT/gpu_check.json     # exits 2 when no GPU is found
    python3 tools/gpu_check.py --out /tmp/c.json --allow-cpu  # every step on the CPU, tiny sizes

What the machine's Python lacks comes from build/gpu-wheels (`make gpu-wheels`), installed into
build/gpu-site-<python version>, first on PYTHONPATH here and in the children: the machine's torch stays.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import zipfile
from dataclasses import replace
from importlib import invalidate_caches, metadata
from pathlib import Path

try:  # the machine's own torch and numpy: nothing here installs them
    import numpy as np
    import torch
except ImportError as exc:
    sys.exit(f"gpu_check: {exc.name} cannot be imported by {sys.executable}; run this script with the "
             f"Python that has torch (the GPU machine's python3), see README.md, 'GPU check'")

REPO = Path(__file__).resolve().parents[1]
WHEELS, SITE = REPO / "build" / "gpu-wheels", REPO / "build" / "gpu-site-{}.{}".format(*sys.version_info)
PATHS = [SITE, REPO / "src", REPO / "tools", REPO / "benchmarks"]
# What the steps import beyond torch, numpy and pytest: src/ (the training report's matplotlib,
# serving), what collecting tests/unit imports (hypothesis, orjson), and their dependencies.
# Not faiss-cpu (30 MB): no step builds a catalog.
NEEDED = ("tokenizers matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing python-dateutil "
          "six packaging flask gunicorn orjson werkzeug jinja2 markupsafe itsdangerous click blinker "
          "hypothesis sortedcontainers "
          # encN_network=transformer (the trainer imports safetensors; transformers builds the model)
          "safetensors transformers huggingface-hub regex pyyaml tqdm filelock fsspec httpx2 httpcore2 h11 "
          "anyio idna truststore hf-xet typing-extensions").split()
STEPS = ("unit_tests", "train", "throughput", "predictor", "serve")
K80 = 14_000  # the published single-GPU figure, samples/s (row_sparse, vocab 10,000)
METRIC = re.compile(r"#quality_metric: host=\S+ epoch=(\d+), (train|validation) (\w+) <\w+>=(\S+)")


def bootstrap() -> list[str]:
    """src/, tools/, benchmarks/ and build/gpu-site on the import path, here and in the children;
    what is missing installed there from build/gpu-wheels. Returns the names installed."""
    sys.path[:0] = map(str, PATHS)
    os.environ["PYTHONPATH"] = os.pathsep.join([*map(str, PATHS), *filter(None, [os.getenv("PYTHONPATH")])])
    need = []
    for name in NEEDED:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            need.append(name)
    if need and WHEELS.is_dir():
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS),
               "--no-deps", "--upgrade", "--target", str(SITE), *need]
        if subprocess.run(pip).returncode:  # no pip here: a wheel is a zip of what goes on the path
            names = {re.sub(r"[-_.]+", "_", n).lower() for n in need}
            for wheel in WHEELS.glob("*.whl"):
                if wheel.name.split("-")[0].lower() in names:
                    zipfile.ZipFile(wheel).extractall(SITE)
        invalidate_caches()
    return need


def versions(gpu: bool) -> dict:
    smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    proc = Path("/proc/driver/nvidia/version")
    driver = (subprocess.run(smi, capture_output=True, text=True).stdout if shutil.which(smi[0]) else
              proc.read_text() if proc.exists() else "none (no NVIDIA driver)").strip().split("\n")[0]
    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "numpy": np.__version__, "driver": driver, "cpus": os.cpu_count()}
    if gpu:
        props, nccl = torch.cuda.get_device_properties(0), torch.cuda.nccl.version()
        found.update(gpu=props.name, gpus=torch.cuda.device_count(), sm=f"{props.major}.{props.minor}",
                     gib=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version(),
                     nccl=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl))
    return found


def verdict(checks: dict[str, bool]) -> str:
    failed = [name for name, ok in checks.items() if not ok]
    return "FAILED " + ", ".join(failed) if failed else "all checks"


def queries(ctx, n: int) -> list[dict]:
    """The first ``n`` validation records' in0, as embedding requests."""
    lines = (ctx.tmp / "data" / "validation" / "data.jsonl").read_text().splitlines()[:n]
    return [{"in0": json.loads(line)["in0"]} for line in lines]


# -- the steps: each returns its figures, "ok" and a one-line "summary" ----------------------------


def unit_tests(ctx) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/unit"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines() or [out.stderr.strip()[-300:]]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1])}
    ran = counts.get("passed", 0) > 0 or not ctx.gpu  # on the CPU every CUDA case is skipped
    return {"ok": out.returncode == 0 and ran, "counts": counts, "command": " ".join(cmd[2:]),
            "failures": [x for x in lines if x.startswith(("FAILED", "ERROR"))], "summary": lines[-1]}


def train(ctx) -> dict:
    import train_throughput as tt
    from o2vtools.process import run_train
    from o2vtools.tree import link_channel_file, write_config

    from object2vec.serving.predictor import Predictor

    n, vocab, length, dim, epochs = (20_000, 10_000, 20, 64, 3) if ctx.gpu else (400, 200, 8, 16, 2)
    common = {"enc0_vocab_size": vocab, "enc0_max_seq_len": length, "enc_dim": dim, "mlp_dim": dim,
              "epochs": epochs, "mini_batch_size": 256 if ctx.gpu else 32, "learning_rate": 0.01}
    jobs = {"dense": {"enc0_network": "hcnn", "enc1_network": "bilstm", "enc1_vocab_size": vocab,
                      "enc1_max_seq_len": length, "enc0_token_embedding_dim": 32,
                      "enc1_token_embedding_dim": 32},
            "row_sparse": {**tt.DOC_CONFIG, "enc0_network": "pooled_embedding", "mlp_dim": dim,
                           "token_embedding_storage_type": "row_sparse"}}
    rng, figures, topics = np.random.default_rng(0), {}, min(vocab // 8, 100)
    for channel, records in (("train", n), ("validation", n // 10)):  # learnable: ids in topics of 8,
        path = ctx.tmp / "data" / channel / "data.jsonl"  # a positive's in1 shares its in0's topic
        path.parent.mkdir(parents=True)
        with path.open("w") as fh:
            for t, y in zip(rng.integers(0, topics, records).tolist(), rng.integers(0, 2, records).tolist()):
                other = t if y else (t + 1 + int(rng.integers(topics - 1))) % topics
                fh.write(json.dumps({"label": y, "in0": (8 * t + rng.integers(0, 8, length)).tolist(),
                                     "in1": (8 * other + rng.integers(0, 8, length)).tolist()}) + "\n")
    for job, extra in jobs.items():
        base = ctx.tmp / f"job-{job}"
        write_config(base, {k: str(v) for k, v in {**common, **extra}.items()}, ["train", "validation"])
        for channel in ("train", "validation"):
            link_channel_file(base, channel, ctx.tmp / "data" / channel / "data.jsonl")
        run = run_train(base, base / "train.log")
        metrics: dict[int, dict] = {}
        for epoch, split, name, value in METRIC.findall(run.log):
            metrics.setdefault(int(epoch), {})[f"{split}:{name}"] = float(value)
        got = {where: Predictor.from_model_dir(base / "model", where).predict(queries(ctx, 256))[0].matrix
               for where in ("cpu", ctx.device) if (base / "model" / "object2vec.pt").exists()}
        diff = float(np.abs(got["cpu"] - got[ctx.device]).max()) if got else np.inf
        checks = {"exit 0": run.code == 0, f"trained on {ctx.device}": f"training on {ctx.device}" in run.log,
                  "metric lines every epoch": sorted(metrics) == list(range(epochs)) and all(
                      len(m) == 4 and np.isfinite(list(m.values())).all() for m in metrics.values()),
                  "model loads on the CPU": diff < 1e-2,  # same embeddings (TF32 aside)
                  "training_curves.png": (base / "output" / "data" / "training_curves.png").exists()}
        accuracy = metrics.get(epochs - 1, {}).get("validation:accuracy", np.nan)
        figures[job] = {"checks": checks, "seconds": round(run.seconds, 1), "metrics": metrics,
                        "cpu_vs_device_max_abs_diff": diff, "log_tail": run.log[-2500:],
                        "summary": f"{job}: {verdict(checks)}, validation accuracy {accuracy:.3f}, "
                                   f"{run.seconds:.0f} s"}
    return {"ok": all(all(f["checks"].values()) for f in figures.values()), "jobs": figures,
            "summary": "; ".join(f.pop("summary") for f in figures.values())}


def throughput(ctx) -> dict:
    import train_throughput as tt

    sync = torch.cuda.synchronize if ctx.gpu else lambda: None
    base = tt.Config(warmup=5, steps=10, repeats=3) if ctx.gpu else replace(tt.QUICK, steps=2, repeats=2)
    vocabs, big = ((10_000, 300_000, 3_000_000), 8192) if ctx.gpu else ((1_000, 5_000, 20_000), 256)
    rows, small = [], base.batch_size
    for vocab in vocabs:
        for storage, batch in (("dense", small), ("row_sparse", small), ("row_sparse", big)):
            cfg = replace(base, vocab=vocab, batch_size=batch)
            row = {"storage": storage, "vocab": vocab, "batch": batch}
            # dense Adam holds weights, gradient and two moments of the whole table (float32)
            need = 16 * vocab * cfg.enc_dim
            if ctx.gpu and storage == "dense" and need > 0.8 * torch.cuda.mem_get_info()[0]:
                rows.append({**row, "skipped": "does not fit in the GPU's free memory"})
                continue
            data = tt.pairs(cfg, zipf=True)
            trainer = tt.make_trainer("pooled_embedding", cfg, data,
                                      {**tt.DOC_CONFIG, "token_embedding_storage_type": storage})
            # make_trainer builds on the CPU (Trainer's default device): move it as Trainer(device=...)
            # does. Parameters move in place, so both optimizers (state made at the first step) follow.
            trainer.device = torch.device(ctx.device)
            trainer.model.to(trainer.device)
            if ctx.gpu:
                torch.cuda.reset_peak_memory_stats()
            step, build = tt.measure_training(trainer, data, cfg)  # the benchmark's own figure
            sync()
            start = time.perf_counter()  # the whole loop again, synchronised: what the GPU really did
            tt.measure_training(trainer, data, cfg)
            sync()
            moved = (trainer.lazy_optimizer or trainer.optimizer).param_groups[0]["params"][0]  # the table
            rows.append({**row, "samples_per_s": round(batch / step), "step_ms": round(step * 1e3, 3),
                         "build_ms": round(build * 1e3, 3), "device": str(moved.device),
                         "synced_samples_per_s": round(batch * (cfg.warmup + cfg.steps * cfg.repeats)
                                                       / (time.perf_counter() - start)),
                         "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if ctx.gpu else 0})
            del trainer, data, moved
            if ctx.gpu:
                torch.cuda.empty_cache()
    rate = rows[1]["samples_per_s"]  # row_sparse, the smallest vocabulary and batch: the K80's case
    return {"ok": all(r.get("device", ctx.device).startswith(ctx.device) for r in rows), "rows": rows,
            "config": {"enc_dim": base.enc_dim, "max_len": base.max_len, "warmup": base.warmup,
                       "steps": base.steps, "repeats": base.repeats, "zipf": tt.ZIPF, "doc": tt.DOC_CONFIG},
            "published_k80_samples_per_s": K80, "row_sparse_over_k80": round(rate / K80, 2),
            "summary": f"row_sparse at vocab {vocabs[0]:,}, batch {small}: {rate:,} samples/s, "
                       f"{rate / K80:.1f}x the published K80 figure ({K80:,})"}


def predictor(ctx) -> dict:
    from object2vec.artifact import save_artifact
    from object2vec.config.hyperparameters import parse_hyperparameters
    from object2vec.model.object2vec import ModelConfig, Object2Vec
    from object2vec.serving.environment import ServingEnv
    from object2vec.serving.predictor import Predictor
    from object2vec.serving.server import worker_device

    device = worker_device(ServingEnv.from_env(), 1)  # what container/serve's first worker picks
    vocab, dim, length, n = (100_000, 300, 50, 1000) if ctx.gpu else (1_000, 16, 10, 100)
    rng, rows = np.random.default_rng(0), []
    instances = [{"in0": rng.integers(0, vocab, length).tolist()} for _ in range(n)]
    for network in ("pooled_embedding", "hcnn"):
        hp = parse_hyperparameters({"enc0_network": network, "enc0_vocab_size": str(vocab),
                                    "enc_dim": str(dim), "enc0_max_seq_len": str(length),
                                    "enc0_token_embedding_dim": str(dim)})
        save_artifact(ctx.tmp / network, Object2Vec(ModelConfig.from_hyperparameters(hp)), hp)
        row, answers = {"network": network, "instances": n, "tokens": length, "enc_dim": dim}, {}
        for where in dict.fromkeys([device, "cpu"]):  # the CPU's answers and speed, for comparison
            model = Predictor.from_model_dir(ctx.tmp / network, where)
            answers[where] = model.predict(instances)[0].matrix  # also the warm-up
            seconds = []
            for _ in range(5 if where == device else 2):
                start = time.perf_counter()
                model.predict(instances)
                seconds.append(time.perf_counter() - start)
            row[f"{where.split(':')[0]}_embeddings_per_s"] = round(n / statistics.median(seconds))
        row["max_abs_diff_vs_cpu"] = float(np.abs(answers[device] - answers["cpu"]).max())
        rows.append(row)
    key = f"{device.split(':')[0]}_embeddings_per_s"
    return {"ok": device.startswith(ctx.device) and all(r["max_abs_diff_vs_cpu"] < 1e-2 for r in rows),
            "serving_device": device, "rows": rows,
            "summary": f"worker device {device}; " + ", ".join(f"{r['network']} {r[key]:,}/s" for r in rows)
                       + f" ({n:,} instances of {length} tokens a request, median of 5)"}


def serve(ctx) -> dict:
    from o2vtools.process import serving

    from object2vec.serving.predictor import Predictor

    base = ctx.tmp / "job-dense"
    if not (base / "model" / "object2vec.pt").exists():
        return {"ok": False, "summary": "no model to serve: the train step did not run or write one"}
    instances, seconds = queries(ctx, 1000), []
    body, headers = json.dumps({"instances": instances}).encode(), {"Content-Type": "application/json"}
    with serving(base, None if ctx.gpu else {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}) as (port, _):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, headers)
        for _ in range(4):
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())["predictions"]
            seconds.append(time.perf_counter() - start)
    log = (base / "serve.log").read_text()
    got = np.array([p["embeddings"] for p in answer], np.float32)
    expected = Predictor.from_model_dir(base / "model", "cpu").predict(instances)[0].matrix
    checks = {f"worker on {ctx.device}": f"model on {ctx.device}" in log,
              "answers as the CPU's": got.shape == expected.shape and np.allclose(got, expected, 1e-2, 1e-3)}
    median = statistics.median(seconds[1:])
    return {"ok": all(checks.values()), "checks": checks, "instances": len(instances), "median_s": median,
            "log_tail": log[-2500:], "summary": f"{verdict(checks)}; {len(instances):,} instances a request "
                                                f"in {median * 1e3:.0f} ms (median of 3 after one)"}


# -- the run -----------------------------------------------------------------------------------------


def print_step(name: str, step: dict) -> None:
    print(f"  {name:<11} {'PASS' if step['ok'] else 'FAIL'} {step['seconds']:6.1f} s  {step['summary']}")
    for row in step.get("rows", []) if name == "throughput" else []:
        peak = ", peak {peak_gpu_mib:,} MiB" if row.get("peak_gpu_mib") else ""
        figures = row.get("skipped") or ("{samples_per_s:>9,} samples/s ({synced_samples_per_s:>9,} "
                                         "synchronised), {step_ms:.2f} ms/step" + peak)
        print(("      {storage:<10} vocab {vocab:>9,}  batch {batch:>5}  " + figures).format(**row))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="the JSON file to write ($OUT/gpu_check.json)")
    parser.add_argument("--allow-cpu", action="store_true", help="no GPU: every step on the CPU, tiny sizes")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="a subset, in order")
    parser.add_argument("--pins", action="store_true", help="print NEEDED as installed here (gpu-wheels)")
    args = parser.parse_args(argv)
    if args.pins:
        print(" ".join(f"{name}=={metadata.version(name)}" for name in NEEDED))
        return 0
    if not args.out:
        parser.error("--out is required")
    started = time.perf_counter()
    gpu = torch.cuda.is_available()
    report = {"ok": False, "device": "cuda" if gpu else "cpu", "argv": sys.argv, "versions": versions(gpu),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "steps": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not gpu and not args.allow_cpu:
        why = ("this torch is a CPU-only build" if torch.version.cuda is None else
               f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no device; CUDA_VISIBLE_DEVICES="
               f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
        report["error"] = f"no GPU found: {why}; NVIDIA driver: {report['versions']['driver']}"
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"GPU check: {report['error']}.\nNothing was checked ({args.out} says so). Run it on the GPU "
              f"machine, or pass --allow-cpu to run every step on the CPU at tiny sizes.", file=sys.stderr)
        return 2
    report["installed_from_wheels"] = bootstrap()
    v = report["versions"]
    print(f"GPU check on {v.get('gpu', 'the CPU (--allow-cpu: tiny sizes)')}: torch {v['torch']} (CUDA "
          f"{v['cuda']}, cuDNN {v.get('cudnn')}, NCCL {v.get('nccl')}), driver {v['driver']}, Python "
          f"{v['python']}; from build/gpu-wheels: {', '.join(report['installed_from_wheels']) or 'nothing'}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="o2v-gpu-check-") as tmp:
        ctx = argparse.Namespace(device=report["device"], gpu=gpu, tmp=Path(tmp))
        for name in args.steps:
            start = time.perf_counter()
            try:
                figures = globals()[name](ctx)
            except Exception as exc:  # a broken step is reported; the others still run
                figures = {"ok": False, "summary": f"{type(exc).__name__}: {exc}"[:300],
                           "traceback": traceback.format_exc()[-4000:]}
            report["steps"][name] = step = {"ok": figures.pop("ok"), "seconds": 0.0, **figures}
            step["seconds"] = round(time.perf_counter() - start, 1)
            print_step(name, step)
            report["ok"] = all(s["ok"] for s in report["steps"].values())
            report["seconds"] = round(time.perf_counter() - started, 1)
            # written after every step: a run cut short (a timeout, a hung job) keeps what it measured
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, s in report["steps"].items() if not s["ok"]]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all steps passed'} in {report['seconds']:.0f} s; "
          f"figures in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
