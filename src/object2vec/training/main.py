"""``container/train``: read the SageMaker tree, train, write ``model/`` -- or ``output/failure``.

    SAGEMAKER_BASE_DIR=/tmp/opt_ml container/train

Exit status 0 on success; 2 with a one-line reason in ``output/failure`` for user errors (bad
hyperparameters or data); 1 with the traceback for internal errors.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import torch

from object2vec.artifact import save_artifact
from object2vec.config.hyperparameters import Hyperparameters, parse_hyperparameters
from object2vec.data.records import PairData, RecordRules, load_channel
from object2vec.errors import UserError
from object2vec.platform.paths import SageMakerPaths
from object2vec.platform.sagemaker_config import (read_hyperparameters, read_input_data_config,
                                                  read_resource_config)
from object2vec.training.metrics import MetricLogger
from object2vec.training.trainer import Trainer, TrainResult

log = logging.getLogger("object2vec")

DATA_CHANNELS = ("train", "validation", "test")
KNOWN_CHANNELS = DATA_CHANNELS + ("auxiliary",)
LOG_FORMAT = "[%(asctime)s %(levelname)s %(process)d] %(message)s"


def configure_logging() -> None:
    """The original's log prefix: ``[11/24/2026 19:10:05 INFO 12345] message``."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%m/%d/%Y %H:%M:%S",
                        stream=sys.stdout, force=True)


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
    return [c for c in DATA_CHANNELS if paths.channel_dir(c).is_dir()]


def load_channels(paths: SageMakerPaths, hp: Hyperparameters, names: list[str]) -> dict[str, PairData]:
    """Load and validate every data channel."""
    rules = RecordRules.from_hyperparameters(hp)
    channels = {}
    for name in names:
        channels[name] = load_channel(paths.channel_dir(name), rules)
        log.info("channel %s: %d records", name, len(channels[name]))
    return channels


def run(paths: SageMakerPaths) -> TrainResult:
    """Train from the SageMaker tree at ``paths`` and write the artifact to ``paths.model_dir``."""
    hp = parse_hyperparameters(read_hyperparameters(paths))
    resource = read_resource_config(paths)
    names = check_channels(paths, read_input_data_config(paths))
    log.info("hyperparameters: %s", json.dumps(hp.to_dict(), sort_keys=True))
    log.info("enc0: %s", hp.enc0)
    log.info("enc1: %s", hp.enc1)
    channels = load_channels(paths, hp, names)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = MetricLogger(resource.current_host, log)
    trainer = Trainer(hp, channels, metrics, device=device,
                      auxiliary_dir=paths.channel_dir("auxiliary"))
    log.info("training on %s: %d parameters", device, sum(p.numel() for p in trainer.model.parameters()))
    result = trainer.train()
    save_artifact(paths.model_dir, trainer.model, hp,
                  metadata={"best_epoch": result.best_epoch, "test": result.test})
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / "metrics.json").write_text(json.dumps(
        {"best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
         "epochs": result.history, "test": result.test}, indent=2) + "\n")
    log.info("model written to %s", paths.model_dir)
    return result


def write_failure(paths: SageMakerPaths, message: str) -> None:
    """Write the failure reason unless an earlier cause is already there (the first cause wins).

    SageMaker shows the first 1024 characters as FailureReason; the whole text stays in the file.
    """
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        if not paths.failure_file.exists():
            paths.failure_file.write_text(message)
    except OSError as exc:
        log.error("could not write %s: %s", paths.failure_file, exc)


def main() -> int:
    """Entry point of ``container/train``; returns the process exit status."""
    configure_logging()
    paths = SageMakerPaths.from_env()
    log.info("Object2Vec training, SageMaker tree %s", paths.base)
    paths.failure_file.unlink(missing_ok=True)  # a stale reason from an earlier local run is not ours
    try:
        run(paths)
    except UserError as exc:
        log.error("ClientError: %s", exc)
        write_failure(paths, f"ClientError: {exc}")
        return 2
    except Exception as exc:  # the one broad boundary: anything else is our bug
        log.exception("AlgorithmError: %s", exc)
        write_failure(paths, f"AlgorithmError: {exc!r}\n{traceback.format_exc()}")
        return 1
    log.info("Reporting training SUCCESS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
