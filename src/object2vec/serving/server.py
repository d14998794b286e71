"""``container/serve``: gunicorn serving the Flask app, one model copy per worker.

    SAGEMAKER_BASE_DIR=/tmp/opt_ml SAGEMAKER_BIND_TO_PORT=8080 container/serve
    curl -s localhost:8080/invocations -H 'Content-Type: application/json' \\
         -d '{"instances": [{"in0": [1, 2], "in1": [3]}]}'

Start-up: the master reads the environment (:mod:`~object2vec.serving.environment`) and loads the
model once to check it -- a missing or unreadable model exits with status 2 and one clear line,
before any worker exists. Then gunicorn forks the workers (no preload: each worker owns its torch
threads and, on a GPU host, its CUDA context); each worker loads the model and warms it up before it
takes a request, so ``/ping`` answers 200 only from a worker that holds the model. The workers are
gunicorn's gthread, bounding the time a request may take to arrive and answering what gunicorn
refuses in JSON (:mod:`~object2vec.serving.worker`). SIGTERM stops
gracefully: the workers finish their requests (up to :data:`GRACEFUL_TIMEOUT_S`) and the master
exits 0.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from object2vec.errors import UserError
from object2vec.serving.environment import ServingEnv
from object2vec.serving.worker import JsonThreadWorker

log = logging.getLogger("object2vec.serving")

EXIT_USER_ERROR = 2
GRACEFUL_TIMEOUT_S = 20  # SageMaker sends SIGKILL 30 s after SIGTERM
KEEPALIVE_S = 5  # idle seconds a client connection stays open between requests
LOG_FORMAT = "[%(asctime)s %(levelname)s %(process)d] %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with time, level and process id (the workers inherit this set-up)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def check_model(model_dir: Path) -> str:
    """Load the model once in the master, to fail fast with a clear message, and describe it.

    Runs with one torch thread so that no OpenMP thread pool exists before gunicorn forks (a pool
    inherited across ``fork`` can hang the workers). Never touches CUDA, for the same reason.

    Raises:
        UserError: no readable Object2Vec model in ``model_dir``.
    """
    import torch  # here, not at the top: a bad environment variable fails without torch's import

    from object2vec.artifact import load_artifact

    torch.set_num_threads(1)
    loaded = load_artifact(model_dir, device="cpu")
    hp = loaded.hyperparameters
    output = "regression" if hp.is_regression else f"softmax, {hp.num_classes} classes"
    encoders = ", ".join(f"enc{s} {e.network} (vocab {e.vocab_size}, max_seq_len {e.max_seq_len})"
                         for s, e in enumerate((hp.enc0, hp.enc1)))
    return f"{encoders}, enc_dim {hp.enc_dim}, {output}"


def worker_device(env: ServingEnv, worker_age: int) -> str:
    """``cuda:<n>`` (workers spread over the GPUs by gunicorn's spawn counter), else ``cpu``."""
    return f"cuda:{(worker_age - 1) % env.gpus}" if env.gpus else "cpu"


def build_worker_app(env: ServingEnv, worker_age: int = 1) -> Any:
    """In a worker, after fork: set torch threads, load and warm up the model, build the app."""
    import torch

    from object2vec.serving.app import create_app
    from object2vec.serving.predictor import Predictor

    torch.set_num_threads(env.torch_threads)
    device = worker_device(env, worker_age)
    predictor = Predictor.from_model_dir(env.model_dir, device=device)
    # One call per mode, so that the first real request does not pay for lazy initialisation.
    predictor.predict([{"in0": [0], "in1": [0]}, {"in0": [0]}, {"in1": [0]}])
    log.info("worker ready: model on %s, %d torch thread(s)", device, env.torch_threads)
    return create_app(predictor, workers=env.workers, max_payload_mb=env.max_payload_mb)


def gunicorn_options(env: ServingEnv) -> dict[str, Any]:
    """The gunicorn settings for ``env`` (the hook is added by :class:`ServingApplication`)."""
    return {
        "bind": [f"0.0.0.0:{env.port}"],
        "workers": env.workers,
        # gthread: a worker answers /ping from one thread while another computes a long request;
        # this subclass bounds the time a request may take to arrive and answers refusals in JSON.
        "worker_class": JsonThreadWorker.configured(env.read_timeout_s, env.read_deadline_s),
        "threads": env.threads,
        "timeout": env.timeout_s,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "preload_app": False,  # each worker loads its own model after fork
        "accesslog": None,
        "errorlog": "-",
        "loglevel": _gunicorn_loglevel(env.log_level),
        "proc_name": "object2vec-serve",
        "worker_tmp_dir": "/dev/shm" if Path("/dev/shm").is_dir() else None,
    }


def _gunicorn_loglevel(level: int) -> str:
    """gunicorn's name for a logging level (it knows debug, info, warning, error, critical)."""
    for name in ("critical", "error", "warning", "info"):
        if level >= getattr(logging, name.upper()):
            return name
    return "debug"


class ServingApplication(BaseApplication):
    """gunicorn run in this process: settings from :func:`gunicorn_options`, the app built in each
    worker by :func:`build_worker_app`."""

    def __init__(self, env: ServingEnv) -> None:
        self.env = env
        self.worker_age = 1
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.env).items():
            self.cfg.set(key, value)
        self.cfg.set("post_fork", self.post_fork)

    def post_fork(self, server: Any, worker: Any) -> None:
        """gunicorn hook, run in the new worker: remember its spawn number (picks its GPU)."""
        self.worker_age = worker.age

    def load(self) -> Any:
        """Run by each worker before it accepts connections (no preload)."""
        return build_worker_app(self.env, self.worker_age)


def main() -> int:
    """Entry point of ``container/serve``: returns (or exits with) the process status."""
    configure_logging()
    try:
        env = ServingEnv.from_env()
        configure_logging(env.log_level)
        log.info("loading the model from %s", env.model_dir)
        description = check_model(env.model_dir)
    except UserError as exc:
        log.error("cannot serve: %s", exc)
        return EXIT_USER_ERROR
    log.info("model: %s", description)
    log.info("serving on 0.0.0.0:%d: %d worker(s) x %d thread(s), %d torch thread(s) each, "
             "timeout %d s, max payload %d MB, request reads within %d s (%d s idle)%s", env.port,
             env.workers, env.threads, env.torch_threads, env.timeout_s, env.max_payload_mb,
             env.read_deadline_s, env.read_timeout_s, ", batch transform" if env.batch else "")
    if env.preferred_mode:
        log.info("INFERENCE_PREFERRED_MODE=%s: accepted; the whole model stays on %s, so it "
                 "changes nothing here", env.preferred_mode, "the GPU" if env.gpus else "the CPU")
    ServingApplication(env).run()  # the gunicorn arbiter exits the process itself
    return 0
