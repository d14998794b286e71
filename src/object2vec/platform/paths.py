"""Every SageMaker path in one place, resolved at call time from ``SAGEMAKER_BASE_DIR``.

Nothing is read or created at import: build a :class:`SageMakerPaths` with :meth:`SageMakerPaths.from_env`
(or pass a ``base`` directly in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"


@dataclass(frozen=True)
class SageMakerPaths:
    """The SageMaker container tree rooted at ``base`` (``/opt/ml`` on SageMaker)."""

    base: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SageMakerPaths:
        """Paths rooted at ``$SAGEMAKER_BASE_DIR`` (default ``/opt/ml``), read now, not at import."""
        env = os.environ if environ is None else environ
        return cls(Path(env.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def input_config_dir(self) -> Path:
        """e.g. /opt/ml/input/config"""
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        """e.g. /opt/ml/input/config/hyperparameters.json"""
        return self.input_config_dir / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        """e.g. /opt/ml/input/config/inputdataconfig.json"""
        return self.input_config_dir / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        """e.g. /opt/ml/input/config/resourceconfig.json (absent in plain local runs)"""
        return self.input_config_dir / "resourceconfig.json"

    @property
    def input_data_dir(self) -> Path:
        """e.g. /opt/ml/input/data"""
        return self.base / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        """e.g. /opt/ml/input/data/train"""
        return self.input_data_dir / channel

    @property
    def model_dir(self) -> Path:
        """e.g. /opt/ml/model: everything here becomes model.tar.gz"""
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        """e.g. /opt/ml/output"""
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        """e.g. /opt/ml/output/data: uploaded as output.tar.gz"""
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        """e.g. /opt/ml/output/failure: its first 1024 characters become FailureReason"""
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        """e.g. /opt/ml/checkpoints: synced with S3 when the job configures checkpointing"""
        return self.base / "checkpoints"
