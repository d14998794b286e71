"""Serving settings read from the environment -- at call time, never at import.

==============================  ===================================================================
Variable                        Meaning (default)
==============================  ===================================================================
SAGEMAKER_BASE_DIR              the model is read from ``$SAGEMAKER_BASE_DIR/model`` (``/opt/ml``)
SAGEMAKER_BIND_TO_PORT          TCP port on 0.0.0.0 (8080)
MODEL_SERVER_WORKERS            gunicorn worker processes (one per GPU, else one per CPU);
                                ``SAGEMAKER_MODEL_SERVER_WORKERS`` is read when it is unset
MODEL_SERVER_TIMEOUT            seconds a worker may spend on one request before it is replaced
                                (60; 600 in batch transform); ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
                                is read when it is unset
MODEL_SERVER_THREADS            request threads per worker (:data:`DEFAULT_THREADS`): ``/ping`` is
                                answered while another thread computes a long request
MODEL_SERVER_READ_TIMEOUT       seconds a request may go without sending a byte while its headers
                                and body are read (:data:`DEFAULT_READ_TIMEOUT_S`): 408 and close
                                (just close before the headers are complete). The whole read is
                                also bounded, by this plus the payload limit at
                                :data:`MIN_READ_RATE` (16 KiB/s): 414 s for 6 MB
SAGEMAKER_MAX_PAYLOAD_IN_MB     largest request body in MiB (6, SageMaker's real-time limit; 1..100)
SAGEMAKER_BATCH                 ``true`` in batch transform: raises the default timeout
INFERENCE_PREFERRED_MODE        ``classification`` or ``embedding``: which network AWS keeps on a
                                GPU when memory is short. A placement hint: this server keeps the
                                whole model on its device, so the value is logged and otherwise a
                                no-op; any other value is ignored with a WARNING naming the two
SAGEMAKER_CONTAINER_LOG_LEVEL   log level, a number (20) or a name such as ``INFO``
==============================  ===================================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from object2vec.errors import UserError
from object2vec.platform.paths import SageMakerPaths

log = logging.getLogger(__name__)

PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
WORKERS_ENVS = ("MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS")
TIMEOUT_ENVS = ("MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT")
THREADS_ENV = "MODEL_SERVER_THREADS"
READ_TIMEOUT_ENV = "MODEL_SERVER_READ_TIMEOUT"
MAX_PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
BATCH_ENV = "SAGEMAKER_BATCH"
PREFERRED_MODE_ENV = "INFERENCE_PREFERRED_MODE"
LOG_LEVEL_ENV = "SAGEMAKER_CONTAINER_LOG_LEVEL"

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 60  # SageMaker answers real-time callers within 60 s anyway
DEFAULT_BATCH_TIMEOUT_S = 600  # batch transform waits up to InvocationsTimeoutInSeconds (600)
DEFAULT_THREADS = 4
# Reading a request holds one of the worker's threads, so a client that stops sending must not hold
# it for ever. Two limits, both met by any working client:
# - idle: DEFAULT_READ_TIMEOUT_S without a byte. A live TCP connection is hardly ever silent that
#   long (five lost retransmissions in a row, from RFC 6298's 1 s timeout, take 31 s), and SageMaker
#   gives up on a real-time invocation after 60 s anyway: this frees the thread before the caller.
# - overall: the idle limit plus the largest allowed body at MIN_READ_RATE, so that one byte every
#   few seconds cannot keep a read going for days. 6 MB at 128 kbit/s takes 393 s; the limit for
#   6 MB is 30 + 384 = 414 s (and 6430 s for batch transform's 100 MB, sent over the host).
DEFAULT_READ_TIMEOUT_S = 30
MIN_READ_RATE = 16 * 1024  # bytes per second
DEFAULT_MAX_PAYLOAD_MB = 6  # InvokeEndpoint's BodyBlob limit, 6 MiB
MAX_PAYLOAD_MB_LIMIT = 100  # MaxPayloadInMB's maximum in CreateTransformJob
PREFERRED_MODES = ("classification", "embedding")


@dataclass(frozen=True)
class ServingEnv:
    """Everything ``container/serve`` reads from the environment, validated."""

    model_dir: Path
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = DEFAULT_THREADS
    timeout_s: int = DEFAULT_TIMEOUT_S
    read_timeout_s: int = DEFAULT_READ_TIMEOUT_S
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    gpus: int = 0
    batch: bool = False
    preferred_mode: str | None = None
    log_level: int = logging.INFO

    @property
    def max_payload_bytes(self) -> int:
        """The request body limit in bytes (MiB, as SageMaker counts: 6 MB = 6291456 bytes)."""
        return self.max_payload_mb * 1024 * 1024

    @property
    def read_deadline_s(self) -> float:
        """Seconds within which a request's headers and body must have been read (see
        :data:`MIN_READ_RATE`); :attr:`read_timeout_s` bounds each wait for more bytes."""
        return self.read_timeout_s + self.max_payload_bytes / MIN_READ_RATE

    @property
    def torch_threads(self) -> int:
        """Intra-op threads per worker: the CPUs shared out between the workers, at least one."""
        return max(1, cpu_count() // self.workers)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingEnv:
        """Read and validate the serving variables (see the module docstring).

        Raises:
            UserError: a variable holds a value outside its documented range (the message names
                the variable and the value). ``INFERENCE_PREFERRED_MODE``, a hint, only warns.
        """
        env = os.environ if environ is None else environ
        gpus = gpu_count(env)
        batch = env.get(BATCH_ENV, "").strip().lower() in ("1", "true", "yes")
        default_workers = gpus or cpu_count()
        timeout_default = DEFAULT_BATCH_TIMEOUT_S if batch else DEFAULT_TIMEOUT_S
        return cls(
            model_dir=SageMakerPaths.from_env(dict(env)).model_dir,
            port=_int(env, (PORT_ENV,), DEFAULT_PORT, 1, 65535),
            workers=_int(env, WORKERS_ENVS, default_workers, 1, 1024),
            threads=_int(env, (THREADS_ENV,), DEFAULT_THREADS, 1, 1024),
            timeout_s=_int(env, TIMEOUT_ENVS, timeout_default, 1, 86400),
            read_timeout_s=_int(env, (READ_TIMEOUT_ENV,), DEFAULT_READ_TIMEOUT_S, 1, 86400),
            max_payload_mb=_payload_mb(env),
            gpus=gpus,
            batch=batch,
            preferred_mode=_preferred_mode(env),
            log_level=_log_level(env),
        )


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity masks such as ``taskset`` and cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def gpu_count(environ: Mapping[str, str] | None = None) -> int:
    """Visible NVIDIA GPUs, counted without initialising CUDA.

    The gunicorn master forks the workers; touching CUDA here (even ``torch.cuda.device_count()``)
    would break CUDA in every worker. So count the driver's ``/proc`` entries, narrowed by
    ``CUDA_VISIBLE_DEVICES``, and report none for a CPU-only torch build.
    """
    gpus_dir = Path("/proc/driver/nvidia/gpus")
    present = len(list(gpus_dir.iterdir())) if gpus_dir.is_dir() else 0
    if present == 0:
        return 0
    import torch  # only on GPU hosts: a bad setting should fail fast, without torch's import time

    if torch.version.cuda is None:
        return 0
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        present = min(present, len(wanted))
    return present


def _raw(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` set to a non-empty value, as ``(name, value)``."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _int(env: Mapping[str, str], names: tuple[str, ...], default: int, low: int, high: int) -> int:
    found = _raw(env, names)
    if found is None:
        return default
    name, value = found
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not an integer (expected {low}..{high})") from None
    if not low <= number <= high:
        raise UserError(f"{name}={number} is outside {low}..{high}")
    return number


def _payload_mb(env: Mapping[str, str]) -> int:
    found = _raw(env, (MAX_PAYLOAD_ENV,))
    if found is not None and found[1] == "0":
        raise UserError(f"{MAX_PAYLOAD_ENV}=0 asks for chunked transfer, which this container does "
                        f"not support: set MaxPayloadInMB between 1 and {MAX_PAYLOAD_MB_LIMIT}")
    return _int(env, (MAX_PAYLOAD_ENV,), DEFAULT_MAX_PAYLOAD_MB, 1, MAX_PAYLOAD_MB_LIMIT)


def _preferred_mode(env: Mapping[str, str]) -> str | None:
    """The placement hint, or None. A value outside :data:`PREFERRED_MODES` is logged and ignored:
    the hint changes nothing here, so a typo in it must not keep the endpoint from starting."""
    found = _raw(env, (PREFERRED_MODE_ENV,))
    if found is None:
        return None
    mode = found[1].lower()
    if mode not in PREFERRED_MODES:
        log.warning("%s=%r is not one of %s: ignored (a placement hint only)", PREFERRED_MODE_ENV,
                    found[1], ", ".join(PREFERRED_MODES))
        return None
    return mode


def _log_level(env: Mapping[str, str]) -> int:
    found = _raw(env, (LOG_LEVEL_ENV,))
    if found is None:
        return logging.INFO
    value = found[1]
    if value.isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise UserError(f"{LOG_LEVEL_ENV}={value!r} is neither a number nor a level name such as "
                        "INFO")
    return level
