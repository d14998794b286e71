"""The world of a training job: which hosts and processes, and the collectives the trainer needs.

Launch (``container/train`` on every host)::

    hosts = sorted(resourceconfig["hosts"])     master = hosts[0], node rank = hosts.index(current_host)
    processes per host = visible GPUs, or 1 on CPU (OBJECT2VEC_NPROC_PER_HOST overrides)
    backend = nccl on GPUs, gloo on CPUs         port = 7777 (OBJECT2VEC_MASTER_PORT overrides)

One host with one process is the plain path: no process group at all. Anything bigger is started with
torch's elastic launcher (the machinery behind ``torchrun``), one worker process per GPU.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from object2vec.errors import UserError
from object2vec.platform.sagemaker_config import ResourceConfig

log = logging.getLogger(__name__)

MASTER_PORT = 7777  # the port the SageMaker training toolkit uses for torchrun, too
NPROC_ENV = "OBJECT2VEC_NPROC_PER_HOST"
PORT_ENV = "OBJECT2VEC_MASTER_PORT"
TIMEOUT_ENV = "OBJECT2VEC_COLLECTIVE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600  # a rank stuck in a collective gives up after this; a dead peer fails sooner
DNS_RETRIES, DNS_WAIT_S = 30, 2.0  # SageMaker's DNS for algo-N comes up late


@dataclass(frozen=True)
class WorldPlan:
    """How ``container/train`` on this host takes part in the job."""

    hosts: tuple[str, ...]
    current_host: str
    nproc_per_host: int
    backend: str
    master_addr: str
    master_port: int
    network_interface: str | None = None

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.nproc_per_host

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """One line a person can read."""
        return (f"world: {len(self.hosts)} host(s) [{', '.join(self.hosts)}], this is "
                f"{self.current_host} (node {self.node_rank}), {self.nproc_per_host} process(es) per "
                f"host, world size {self.world_size}, backend {self.backend}"
                + (f", master {self.master_addr}:{self.master_port}" if self.distributed else ""))


def plan_world(resource: ResourceConfig, environ: dict[str, str] | None = None) -> WorldPlan:
    """Decide the world from the resource config, the visible GPUs and the environment."""
    env = os.environ if environ is None else environ
    gpus = torch.cuda.device_count()
    nproc = gpus if gpus > 0 else 1
    if env.get(NPROC_ENV):
        try:
            nproc = int(env[NPROC_ENV])
            assert nproc >= 1
        except (ValueError, AssertionError):
            raise UserError(f"{NPROC_ENV}={env[NPROC_ENV]!r} must be a positive integer") from None
        if gpus and nproc > gpus:
            raise UserError(f"{NPROC_ENV}={nproc} but only {gpus} GPU(s) are visible")
    try:
        port = int(env.get(PORT_ENV) or MASTER_PORT)
    except ValueError:
        raise UserError(f"{PORT_ENV}={env[PORT_ENV]!r} must be a port number") from None
    return WorldPlan(hosts=resource.hosts, current_host=resource.current_host, nproc_per_host=nproc,
                     backend="nccl" if gpus else "gloo",
                     master_addr=resource.hosts[0] if len(resource.hosts) > 1 else "127.0.0.1",
                     master_port=port, network_interface=resource.network_interface_name)


def resolve_host(host: str, retries: int = DNS_RETRIES, wait_s: float = DNS_WAIT_S) -> str:
    """The address of ``host``, retrying while DNS is not up yet."""
    for attempt in range(retries):
        try:
            return socket.gethostbyname(host)
        except socket.gaierror:
            if attempt == retries - 1:
                raise UserError(f"cannot resolve host {host!r} after {retries} attempts") from None
            log.info("waiting for DNS to resolve %s (%d/%d)", host, attempt + 1, retries)
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def launch(plan: WorldPlan, entrypoint: Callable[[], Any], run_id: str | None = None) -> None:
    """Start ``plan.nproc_per_host`` workers running ``entrypoint`` with torch's elastic launcher.

    Raises ``torch.distributed.elastic.multiprocessing.errors.ChildFailedError`` if a worker fails.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if plan.network_interface and plan.backend == "nccl":
        os.environ.setdefault("NCCL_SOCKET_IFNAME", plan.network_interface)
    if plan.network_interface and plan.backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", plan.network_interface)
    master = resolve_host(plan.master_addr)
    config = LaunchConfig(
        min_nodes=len(plan.hosts), max_nodes=len(plan.hosts), nproc_per_node=plan.nproc_per_host,
        # every host must name the same run: the store's keys are prefixed with it
        run_id=run_id or os.environ.get("TRAINING_JOB_NAME") or "object2vec",
        rdzv_backend="static", rdzv_endpoint=f"{master}:{plan.master_port}",
        rdzv_configs={"rank": plan.node_rank, "timeout": collective_timeout_s()},
        max_restarts=0, monitor_interval=0.5, start_method="spawn")
    elastic_launch(config, entrypoint)()


def collective_timeout_s() -> int:
    return int(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the world (``(0, 0, 1)`` and no process group when run plainly)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str = "gloo"

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read the variables the elastic launcher sets (RANK, LOCAL_RANK, WORLD_SIZE, ...)."""
        if "RANK" not in os.environ:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]),
                   int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"]),
                   "nccl" if torch.cuda.is_available() else "gloo")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that logs metrics and writes ``model/``."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def init(self) -> None:
        """Join the process group (no-op when not distributed)."""
        if not self.distributed:
            return
        if self.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(self.backend, timeout=datetime.timedelta(seconds=collective_timeout_s()))

    def cleanup(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives (identity when not distributed) --------------------------------------------------

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_reduce_min(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_rows(self, ids: torch.Tensor, grad: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's touched row ids ``(U_r,)`` and gradient rows ``(U_r, D)``, concatenated.

        NCCL has no sparse all-reduce: the ranks exchange sizes, then the padded ids and rows.
        """
        sizes = [torch.zeros(1, dtype=torch.long, device=ids.device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([ids.numel()], dtype=torch.long, device=ids.device))
        counts = [int(s.item()) for s in sizes]
        width = max(counts)
        pad_ids = torch.zeros(width, dtype=ids.dtype, device=ids.device)
        pad_ids[: ids.numel()] = ids
        pad_grad = grad.new_zeros(width, grad.shape[1])
        pad_grad[: ids.numel()] = grad
        all_ids = [torch.empty_like(pad_ids) for _ in counts]
        all_grad = [torch.empty_like(pad_grad) for _ in counts]
        dist.all_gather(all_ids, pad_ids)
        dist.all_gather(all_grad, pad_grad)
        return (torch.cat([t[:n] for t, n in zip(all_ids, counts)]),
                torch.cat([t[:n] for t, n in zip(all_grad, counts)]))

    def average_rows(self, ids: torch.Tensor, grad: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean over ranks of a row-sparse gradient, as DistributedDataParallel averages dense
        ones: each rank's rows ``ids (U_r,)`` with gradient rows ``grad (U_r, D)`` -> the union of
        the ids ``(U,)``, sorted, and each row's gradient summed over the ranks (zero from a rank
        that did not touch it) and divided by the world size ``(U, D)``."""
        all_ids, all_grad = self.all_gather_rows(ids, grad)
        union, inverse = torch.unique(all_ids, sorted=True, return_inverse=True)
        summed = all_grad.new_zeros(union.numel(), all_grad.shape[1]).index_add_(0, inverse, all_grad)
        return union, summed.div_(self.world_size)
