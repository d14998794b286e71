"""SageMaker ``/opt/ml`` trees for ``container/train``: the ``input/config`` files and channels."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

HOST = "algo-1"


def input_data_config(channels: Sequence[str]) -> dict[str, dict[str, str]]:
    """``inputdataconfig.json``: JSON Lines channels in File mode."""
    return {name: {"ContentType": "application/jsonlines", "TrainingInputMode": "File",
                   "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
            for name in channels}


def resource_config(current_host: str = HOST, hosts: Sequence[str] = (HOST,)) -> dict[str, object]:
    """``resourceconfig.json`` for ``current_host`` among ``hosts`` (sorted, as SageMaker sends)."""
    if current_host not in hosts:
        raise ValueError(f"current_host {current_host!r} is not one of the hosts {list(hosts)}")
    return {"current_host": current_host, "hosts": sorted(hosts), "network_interface_name": "eth0",
            "current_instance_type": "local", "current_group_name": "homogeneousCluster",
            "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                 "instance_type": "local", "hosts": sorted(hosts)}]}


def write_json(path: Path, value: object) -> None:
    """Pretty JSON, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_config(base: Path, hp: dict[str, str], channels: Sequence[str],
                 resource: dict[str, object] | None = None) -> None:
    """The three ``input/config`` files and the empty output folders."""
    config = base / "input" / "config"
    write_json(config / "hyperparameters.json", hp)
    write_json(config / "inputdataconfig.json", input_data_config(channels))
    write_json(config / "resourceconfig.json", resource or resource_config())
    for folder in ("model", "output/data"):
        (base / folder).mkdir(parents=True, exist_ok=True)


def link_channel_file(base: Path, channel: str, source: Path) -> None:
    """Put an existing file (or folder: a model's) into ``input/data/<channel>/``: hard links when the
    file system allows them (benchmarks reuse one large channel file across many trees), else copies."""
    target = base / "input" / "data" / channel / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
