"""``container/train``: read the SageMaker tree, train, write ``model/`` -- or ``output/failure``.

    SAGEMAKER_BASE_DIR=/tmp/opt_ml container/train
    OBJECT2VEC_NPROC_PER_HOST=2 SAGEMAKER_BASE_DIR=/tmp/opt_ml container/train   # 2 CPU processes

Exit status 0 on success; 2 with the reason in ``output/failure`` for user errors (bad hyperparameters
or data); 1 with the traceback for internal errors; 143 when stopped by SIGTERM (after checkpointing).
With several processes (GPUs or hosts) this process becomes the launcher of one worker per GPU.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

import torch

from object2vec.artifact import save_artifact
from object2vec.config.hyperparameters import Hyperparameters, parse_hyperparameters
from object2vec.data.catalog import Catalog, load_catalog
from object2vec.data.documents import DocumentData, fixed_pairs, is_document_channel, load_documents
from object2vec.data.pretrained_model import ModelFolder, resolve_transformers, specs, tokenizers
from object2vec.data.records import Encoders, PairData, RecordRules, load_channel
from object2vec.data.text_inputs import TextSides, build_text_encoders, text_sides
from object2vec.errors import UserError
from object2vec.neighbors import CatalogIndex, embed_catalog
from object2vec.platform.memory import device_available, host_available
from object2vec.platform.paths import SageMakerPaths
from object2vec.platform.sagemaker_config import (
    read_hyperparameters,
    read_input_data_config,
    read_resource_config,
)
from object2vec.reporting.report import write_report
from object2vec.text import text_encoder_from_json
from object2vec.training.checkpoint import channel_digests, combine_digests
from object2vec.training.distributed import DistEnv, WorldPlan, launch, plan_world
from object2vec.training.memory import check_fits, estimate_training_memory, format_bytes
from object2vec.training.metrics import MetricLogger
from object2vec.training.trainer import Trainer, TrainingInterrupted, TrainResult

log = logging.getLogger("object2vec")

DATA_CHANNELS = ("train", "validation", "test")
TOKENIZERS_FILE = "object2vec-tokenizers.json"  # beside the checkpoint: see prepare_text
KNOWN_CHANNELS = DATA_CHANNELS + ("auxiliary", "catalog")
LOG_FORMAT = "[%(asctime)s %(levelname)s %(process)d] %(message)s"
EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_STOPPED = 2, 1, 128 + signal.SIGTERM
T = TypeVar("T")


def configure_logging(rank: int | None = None) -> None:
    """The original's log prefix: ``[11/24/2026 19:10:05 INFO 12345] message``. Ranks other than 0
    log warnings and errors only, prefixed with their rank."""
    fmt = LOG_FORMAT if not rank else LOG_FORMAT.replace("] ", f"] [rank {rank}] ")
    logging.basicConfig(level=logging.INFO if not rank else logging.WARNING, format=fmt,
                        datefmt="%m/%d/%Y %H:%M:%S", stream=sys.stdout, force=True)


def check_channels(paths: SageMakerPaths, input_config: dict) -> list[str]:
    """Names of the data channels present; raises :class:`UserError` for a missing train channel,
    unknown channel names, or Pipe mode."""
    present = sorted(set(input_config) | {p.name for p in paths.input_data_dir.glob("*") if p.is_dir()})
    unknown = [c for c in present if c not in KNOWN_CHANNELS]
    if unknown:
        raise UserError(f"unknown channel(s) {', '.join(unknown)}: Object2Vec reads "
                        f"{', '.join(KNOWN_CHANNELS)}")
    for name, cfg in input_config.items():
        if str(cfg.get("TrainingInputMode", "File")).lower() != "file":
            raise UserError(f"channel {name!r} uses TrainingInputMode={cfg['TrainingInputMode']}; "
                            f"Object2Vec supports File mode only")
    if "train" not in present or not paths.channel_dir("train").is_dir():
        raise UserError(f"the 'train' channel is required: expected JSON Lines files in "
                        f"{paths.channel_dir('train')}")
    # a declared channel that SageMaker did not deliver must not vanish (a validation channel
    # silently gone changes what early stopping watches)
    for name in sorted(input_config):
        if not paths.channel_dir(name).is_dir():
            raise UserError(f"channel {name!r} is listed in {paths.input_data_config_file} but its "
                            f"folder {paths.channel_dir(name)} does not exist")
    return [c for c in DATA_CHANNELS if paths.channel_dir(c).is_dir()]


def load_channels(paths: SageMakerPaths, rules: RecordRules, names: list[str],
                  workers: int = 1) -> dict[str, PairData | DocumentData]:
    """Load and validate every data channel (text sides tokenized by ``rules.text``, in
    ``workers`` processes for a large channel). A channel of documents stays documents for train
    and becomes one fixed pair per document for validation and test."""
    channels: dict[str, PairData | DocumentData] = {}
    for name in names:
        start, where = time.perf_counter(), paths.channel_dir(name)
        if is_document_channel(where):
            docs = load_documents(where, rules)
            channels[name] = docs if name == "train" else fixed_pairs(docs, name)
            log.info("channel %s: %d documents, %d sentences in %.1f s", name, len(docs),
                     docs.num_sentences, time.perf_counter() - start)
            continue
        channels[name] = load_channel(where, rules, workers)
        seconds = time.perf_counter() - start
        log.info("channel %s: %d records in %.1f s (%.0f records/s)", name, len(channels[name]),
                 seconds, len(channels[name]) / max(seconds, 1e-9))
    return channels


def check_memory(hp: Hyperparameters, dist: DistEnv, transformers: tuple = (None, None)) -> None:
    """Fail with a :class:`UserError` before the model is built if it cannot fit: in the GPU's free
    memory, or in the host's for every process of this host (each holds its own model; on a GPU
    the model is still built on the host first). Runs on every rank before any builds anything."""
    estimate = estimate_training_memory(hp, distributed=dist.distributed, transformers=transformers)
    host = host_available()
    if dist.device.type == "cuda":
        check_fits(estimate, device_available(dist.device))
        if host is not None:
            check_fits(estimate, host, dist.local_world_size, need=estimate.weights,
                       what="the weights, built on the host before they move to the GPU")
    elif host is not None:
        check_fits(estimate, host, dist.local_world_size)
    log.info("memory: about %s per process for weights, gradients, optimizer state and the best "
             "epoch's copy (%s)", format_bytes(estimate.total),
             "available unknown" if host is None else f"{format_bytes(host.bytes)} on the host")


def data_digest(paths: SageMakerPaths, names: list[str], dist: DistEnv
                ) -> dict[str, list[str]] | None:
    """The digest of the job's data for the checkpoint's fingerprint: every data channel and the
    auxiliary channel, from every host (a ``ShardedByS3Key`` channel differs per host). None when
    the job does not checkpoint. A collective: every rank calls it; each host's first rank reads."""
    if not dist.any(paths.checkpoint_dir.is_dir()):
        return None
    mine = None
    if dist.local_rank == 0:  # the host's other ranks see the same files
        folders = {name: paths.channel_dir(name) for name in names}
        if paths.channel_dir("auxiliary").is_dir():  # vocabularies and pretrained vectors
            folders["auxiliary"] = paths.channel_dir("auxiliary")
        mine = channel_digests(folders)
    return combine_digests(dist.all_gather_object(mine))


def prepare_text(paths: SageMakerPaths, hp: Hyperparameters, digest: dict[str, list[str]] | None,
                 dist: DistEnv, folders: tuple[ModelFolder | None, ModelFolder | None] = (None, None)
                 ) -> tuple[TextSides, Encoders]:
    """The job's text sides and their tokenizers. Global rank 0 makes them (training a tokenizer is
    not deterministic: the library counts in hash maps) and every rank gets its JSON. A job with
    checkpoints keeps them beside the checkpoint, with the fingerprint of the hyperparameters and
    data, so that a resumed job tokenizes exactly as the checkpoint's weights were trained. A
    transformer side's tokenizer is its model folder's (``folders``)."""
    sides = _agreed(dist, lambda: text_sides(hp, paths.channel_dir("train")))
    if not sides.any():
        return sides, (None, None)

    def make() -> list[str | None] | None:
        if not dist.is_main:
            return None
        fingerprint = json.loads(json.dumps({"hyperparameters": hp.to_dict(), "data": digest}))
        saved = paths.checkpoint_dir / TOKENIZERS_FILE if digest is not None else None
        try:
            kept = json.loads(saved.read_text()) if saved and saved.is_file() else {}
        except (OSError, ValueError):
            kept = {}
        if isinstance(kept, dict) and kept.get("fingerprint") == fingerprint:
            log.info("tokenizers from %s (same hyperparameters and data)", saved)
            return kept["tokenizers"]
        aux = paths.channel_dir("auxiliary")
        encoders = build_text_encoders(hp, sides, paths.channel_dir("train"), aux if aux.is_dir() else None,
                                       tokenizers(folders))
        texts = [e.to_json() if e is not None else None for e in encoders]
        if saved is not None:
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "tokenizers": texts}))
            os.replace(tmp, saved)
        return texts

    texts = dist.broadcast_object(_agreed(dist, make))
    encoders = [text_encoder_from_json(t, f"in{side} tokenizer") if t is not None else None
                for side, t in enumerate(texts)]
    if sides.shared(hp):
        encoders[1] = encoders[0]
    return sides, (encoders[0], encoders[1])


def catalog_index(model: torch.nn.Module, catalog: Catalog, hp: Hyperparameters,
                  device: torch.device) -> CatalogIndex:
    """Embed the catalog with the trained (best epoch's) model and index it."""
    start = time.perf_counter()
    vectors = embed_catalog(model, catalog, device)
    embedded = time.perf_counter() - start
    index = CatalogIndex.build(vectors, catalog.ids, catalog.side, hp.catalog_index, hp.catalog_ivf_lists,
                               hp.catalog_ivf_probe, cosine=hp.catalog_similarity == "cosine",
                               tokens=catalog.tokens)
    log.info("catalog: %d items embedded in %.1f s, %s index built in %.1f s", len(catalog.ids), embedded,
             index.kind, time.perf_counter() - start - embedded)
    return index


def _agreed(dist: DistEnv, step: Callable[[], T]) -> T:
    """Run a setup step on every rank; if it fails with a user error on any rank, fail everywhere with
    that rank's message (so every host reports the real cause, not a broken collective)."""
    try:
        value, error = step(), None
    except UserError as exc:
        value, error = None, str(exc)
    first = next((e for e in dist.all_gather_object(error) if e), None)
    if first is not None:
        raise UserError(first)
    return value  # type: ignore[return-value]


def summary(result: TrainResult, finished: bool) -> dict:
    """What ``output/data/metrics.json`` holds (and ``training_curves.png`` shows)."""
    return {"best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            "finished": finished, "epochs": result.history, "test": result.test}


def run(paths: SageMakerPaths, dist: DistEnv | None = None,
        stop_requested: Callable[[], bool] = lambda: False) -> TrainResult:
    """Train from the SageMaker tree at ``paths``; global rank 0 writes the artifact to ``model/``."""
    dist = dist or DistEnv()

    def setup():
        hp = parse_hyperparameters(read_hyperparameters(paths))
        input_config = read_input_data_config(paths)
        names = check_channels(paths, input_config)
        aux = paths.channel_dir("auxiliary")
        hp, folders = resolve_transformers(hp, aux if aux.is_dir() else None)  # encN_network=transformer
        return hp, folders, input_config, names

    hp, folders, input_config, names = _agreed(dist, setup)
    digest = data_digest(paths, names, dist)
    sides, encoders = prepare_text(paths, hp, digest, dist, folders)

    def load():
        # text is tokenized on this process's share of the host's cores
        workers = max(1, len(os.sched_getaffinity(0)) // dist.local_world_size)
        rules = RecordRules.from_hyperparameters(hp, encoders, sides.origin)
        channels = load_channels(paths, rules, names, workers)
        catalog = None
        if dist.is_main and paths.channel_dir("catalog").is_dir():  # checked now, embedded at the end
            catalog = load_catalog(paths.channel_dir("catalog"), rules)
            log.info("channel catalog: %d items (in%d)", len(catalog.ids), catalog.side)
        check_memory(hp, dist, specs(folders))  # after the data is in memory, before the model is
        return channels, catalog

    channels, catalog = _agreed(dist, load)
    log.info("hyperparameters: %s", json.dumps(hp.to_dict(), sort_keys=True))
    log.info("enc0: %s", hp.enc0)
    log.info("enc1: %s", hp.enc1)
    sharded = frozenset(c for c, cfg in input_config.items()
                        if cfg.get("S3DistributionType") == "ShardedByS3Key")
    resource = read_resource_config(paths)
    metrics = MetricLogger(resource.current_host, log, enabled=dist.is_main)

    def report(result: TrainResult) -> None:  # after every epoch: a stopped job keeps its report
        if dist.is_main:
            write_report(paths.output_data_dir, summary(result, finished=False))

    trainer = _agreed(dist, lambda: Trainer(
        hp, channels, metrics, device=dist.device, auxiliary_dir=paths.channel_dir("auxiliary"),
        text=encoders, pretrained=folders,
        dist=dist, sharded=sharded, checkpoint_dir=paths.checkpoint_dir, data_digest=digest,
        stop_requested=stop_requested, on_epoch_end=report))
    trainer.resume()
    log.info("training on %s: %d parameters", dist.device,
             sum(p.numel() for p in trainer.model.parameters()))
    result = trainer.train()
    if dist.is_main:
        index = catalog_index(trainer.model, catalog, hp, dist.device) if catalog else None
        save_artifact(paths.model_dir, trainer.model, hp,
                      metadata={"best_epoch": result.best_epoch, "test": result.test}, text=encoders,
                      catalog=index,
                      transformer_tokenizers=tokenizers(folders))
        write_report(paths.output_data_dir, summary(result, finished=True))
        log.info("model written to %s", paths.model_dir)
    return result


def write_failure(paths: SageMakerPaths, message: str) -> None:
    """Write the failure reason unless an earlier cause is already there (the first cause wins, also
    between processes: the file is created exclusively).

    SageMaker shows the first 1024 characters as FailureReason; the whole text stays in the file.
    """
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        with open(paths.failure_file, "x") as fh:
            fh.write(message)
    except FileExistsError:
        pass
    except OSError as exc:
        log.error("could not write %s: %s", paths.failure_file, exc)


def run_process(paths: SageMakerPaths, dist: DistEnv) -> int:
    """One training process with its error boundary; returns its exit status."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the step, checkpoint, exit
    try:
        dist.init()
        run(paths, dist, stop.is_set)
    except TrainingInterrupted as exc:
        log.warning("%s; exiting", exc)
        return EXIT_STOPPED
    except UserError as exc:
        log.error("ClientError: %s", exc)
        write_failure(paths, f"ClientError: {exc}")
        return EXIT_USER_ERROR
    except Exception as exc:  # the one broad boundary: anything else is our bug (or a dead peer)
        log.exception("AlgorithmError: %s", exc)
        write_failure(paths, f"AlgorithmError: {exc!r}\n{traceback.format_exc()}")
        return EXIT_INTERNAL_ERROR
    dist.cleanup()  # a failed rank skips it: see worker_main
    return 0


def worker_main() -> None:
    """Entry point of each process started by the elastic launcher."""
    dist = DistEnv.from_env()
    configure_logging(dist.rank)
    # share the host's cores: N workers with all-core thread pools each thrash (measured 15x slower)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.local_world_size))
    code = run_process(SageMakerPaths.from_env(), dist)
    if code:
        # Leave without tearing the process group down: the peers of a failed job exit too, and gloo's
        # teardown (destroy_process_group, or the group's destructor at exit) can then abort this
        # process when a peer's connection is already gone ("terminate called without an active
        # exception", then SIGABRT or SIGBUS), and the launcher would report that signal instead of
        # this exit status. The reason is in output/failure already.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def launch_workers(paths: SageMakerPaths, plan: WorldPlan) -> int:
    """Run the workers of this host; the exit status is the first failed worker's."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch(plan, worker_main)
    except ChildFailedError as exc:
        rank, first = exc.get_first_failure()
        log.error("worker (rank %d) failed with exit code %s", rank, first.exitcode)
        if first.exitcode not in (EXIT_USER_ERROR, EXIT_STOPPED):  # those wrote their own reason
            write_failure(paths, f"AlgorithmError: training worker rank {rank} exited with code "
                                 f"{first.exitcode}")
        return first.exitcode if first.exitcode > 0 else EXIT_INTERNAL_ERROR
    except SignalException as exc:  # SIGTERM to the launcher: the workers were told to stop
        log.warning("launcher stopped by signal %s", exc.sigval)
        return EXIT_STOPPED
    return 0


def main() -> int:
    """Entry point of ``container/train``; returns the process exit status."""
    configure_logging()
    paths = SageMakerPaths.from_env()
    log.info("Object2Vec training, SageMaker tree %s", paths.base)
    paths.failure_file.unlink(missing_ok=True)  # a stale reason from an earlier local run is not ours
    try:
        plan = plan_world(read_resource_config(paths))
        log.info("%s", plan.describe())
        code = launch_workers(paths, plan) if plan.distributed else run_process(paths, DistEnv())
    except UserError as exc:  # the world could not be set up (resource config, DNS, env)
        log.error("ClientError: %s", exc)
        write_failure(paths, f"ClientError: {exc}")
        return EXIT_USER_ERROR
    if code == 0:
        log.info("Reporting training SUCCESS")
    return code


if __name__ == "__main__":
    sys.exit(main())
