"""How `container/train` decides the world, and the launch it asks torch's elastic launcher for.

No GPU here: the CUDA/NCCL branch is exercised by faking the visible GPU count and capturing the
LaunchConfig that would be handed to torch.distributed.launcher.
"""

from __future__ import annotations

import socket

import pytest
import torch

from object2vec.errors import UserError
from object2vec.platform.sagemaker_config import ResourceConfig
from object2vec.training import distributed
from object2vec.training.distributed import DistEnv, plan_world, resolve_host

THREE = ResourceConfig("algo-2", ("algo-1", "algo-2", "algo-3"), "eth0")


def test_single_cpu_host_is_the_plain_path(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    plan = plan_world(ResourceConfig(), {})
    assert (plan.world_size, plan.backend, plan.distributed) == (1, "gloo", False)
    assert plan.describe() == ("world: 1 host(s) [algo-1], this is algo-1 (node 0), 1 process(es) "
                               "per host, world size 1, backend gloo")


def test_gpu_hosts_run_one_nccl_worker_per_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    plan = plan_world(THREE, {})
    assert (plan.nproc_per_host, plan.world_size, plan.backend) == (8, 24, "nccl")
    assert (plan.master_addr, plan.master_port, plan.node_rank) == ("algo-1", 7777, 1)
    assert "3 host(s) [algo-1, algo-2, algo-3], this is algo-2 (node 1), 8 process(es) per host, " \
           "world size 24, backend nccl, master algo-1:7777" in plan.describe()


def test_overrides_and_their_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    plan = plan_world(ResourceConfig(), {"OBJECT2VEC_NPROC_PER_HOST": "2",
                                         "OBJECT2VEC_MASTER_PORT": "29500"})
    assert (plan.world_size, plan.master_addr, plan.master_port) == (2, "127.0.0.1", 29500)
    with pytest.raises(UserError, match="OBJECT2VEC_NPROC_PER_HOST='zero' must be a positive integer"):
        plan_world(ResourceConfig(), {"OBJECT2VEC_NPROC_PER_HOST": "zero"})
    with pytest.raises(UserError, match="OBJECT2VEC_NPROC_PER_HOST='0'"):
        plan_world(ResourceConfig(), {"OBJECT2VEC_NPROC_PER_HOST": "0"})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="=4 but only 2 GPU"):
        plan_world(ResourceConfig(), {"OBJECT2VEC_NPROC_PER_HOST": "4"})


def test_launch_builds_the_torchrun_equivalent_for_nccl(monkeypatch):
    """The NCCL launch: static rendezvous at the first host, node rank of this host, one worker per
    GPU, NCCL_SOCKET_IFNAME from resourceconfig, the same run id on every host."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(distributed, "resolve_host", lambda host: "10.0.0.1")
    monkeypatch.delenv("NCCL_SOCKET_IFNAME", raising=False)
    monkeypatch.delenv("TRAINING_JOB_NAME", raising=False)
    captured = {}

    def fake_elastic_launch(config, entrypoint):
        captured["config"], captured["entrypoint"] = config, entrypoint
        return lambda *args: None

    import torch.distributed.launcher.api as api

    monkeypatch.setattr(api, "elastic_launch", fake_elastic_launch)
    distributed.launch(plan_world(THREE, {}), print)
    config = captured["config"]
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (3, 3, 4)
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("static", "10.0.0.1:7777")
    assert config.rdzv_configs["rank"] == 1 and config.run_id == "object2vec"
    assert config.max_restarts == 0
    assert distributed.os.environ["NCCL_SOCKET_IFNAME"] == "eth0"
    monkeypatch.delenv("NCCL_SOCKET_IFNAME")


def test_host_names_are_resolved_with_retries(monkeypatch):
    calls = []

    def flaky(host):
        calls.append(host)
        if len(calls) < 3:
            raise socket.gaierror("not yet")
        return "10.1.2.3"

    monkeypatch.setattr(socket, "gethostbyname", flaky)
    assert resolve_host("algo-1", retries=5, wait_s=0) == "10.1.2.3"
    assert len(calls) == 3
    calls.clear()
    monkeypatch.setattr(socket, "gethostbyname", lambda h: (_ for _ in ()).throw(socket.gaierror()))
    with pytest.raises(UserError, match="cannot resolve host 'algo-9' after 2 attempts"):
        resolve_host("algo-9", retries=2, wait_s=0)


def test_dist_env_from_the_launcher_variables(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert DistEnv.from_env() == DistEnv()
    for k, v in dict(RANK="3", LOCAL_RANK="1", WORLD_SIZE="4", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(k, v)
    env = DistEnv.from_env()
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)
    assert env.distributed and not env.is_main
