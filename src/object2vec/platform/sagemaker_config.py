"""Readers of the SageMaker config files (hyperparameters, input data, resources).

Plain ``json`` with this project's own error messages. The SageMaker training toolkit
(``sagemaker-training``) is not used: it models a script-mode job (a user entry point, ``SM_*``
variables, MPI), reads its paths at import time and rewrites ``SAGEMAKER_BASE_DIR`` when ``/opt/ml``
is absent, and it would bring about 200 MB (scipy, gevent, paramiko, ...) and a C compiler into
both images for three ``json.load`` calls; README.md, "Dependencies", gives the measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from object2vec.errors import UserError
from object2vec.platform.paths import SageMakerPaths

DEFAULT_HOST = "algo-1"


def _int_or_digits(text: str) -> int | str:
    """A JSON integer, or its digits as a string when Python refuses to convert that many (over
    ``sys.get_int_max_str_digits()``, 4300): the reader of the key then rejects it by name."""
    try:
        return int(text)
    except ValueError:
        return text


def read_json_file(path: Path, what: str) -> Any:
    """Read one SageMaker JSON config file; a missing or malformed file is a :class:`UserError`."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        # An integer past Python's int-string limit keeps its digits (see _int_or_digits).
        return json.loads(path.read_text(encoding="utf-8"), parse_int=_int_or_digits)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
                        f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def read_hyperparameters(paths: SageMakerPaths) -> dict[str, Any]:
    """The raw hyperparameter map (values are strings on SageMaker); missing file means none set."""
    if not paths.hyperparameters_file.exists():
        return {}
    data = read_json_file(paths.hyperparameters_file, "hyperparameters file")
    if not isinstance(data, dict):
        raise UserError(f"hyperparameters file {paths.hyperparameters_file} must hold a JSON "
                        f"object, got {type(data).__name__}")
    return data


def read_input_data_config(paths: SageMakerPaths) -> dict[str, dict[str, Any]]:
    """``inputdataconfig.json`` (channel name -> settings); empty when absent (local runs)."""
    if not paths.input_data_config_file.exists():
        return {}
    path = paths.input_data_config_file
    data = read_json_file(path, "input data config")
    if not isinstance(data, dict):
        raise UserError(f"input data config {path} must hold a JSON object")
    for name, settings in data.items():
        if not isinstance(settings, dict):
            raise UserError(f"input data config {path}: channel {name!r} must map to an object of "
                            f"settings (e.g. {{\"TrainingInputMode\": \"File\"}}), got "
                            f"{type(settings).__name__} {json.dumps(settings)[:60]}")
    return data


@dataclass(frozen=True)
class ResourceConfig:
    """Who we are in the job: this host, every host (sorted), and the network interface."""

    current_host: str = DEFAULT_HOST
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    network_interface_name: str | None = None

    @property
    def node_rank(self) -> int:
        """Position of this host among the sorted hosts (the master is node 0)."""
        return self.hosts.index(self.current_host)


def read_resource_config(paths: SageMakerPaths) -> ResourceConfig:
    """``resourceconfig.json``, or a single ``algo-1`` host when the file is absent (local runs)."""
    if not paths.resource_config_file.exists():
        return ResourceConfig()
    data = read_json_file(paths.resource_config_file, "resource config")
    try:
        current = str(data["current_host"])
        hosts = tuple(sorted(str(h) for h in data.get("hosts") or [current]))
    except (KeyError, TypeError):
        raise UserError(f"resource config {paths.resource_config_file} needs 'current_host' and "
                        f"'hosts'") from None
    if current not in hosts:
        raise UserError(f"resource config {paths.resource_config_file}: current_host {current!r} "
                        f"is not among hosts {list(hosts)}")
    return ResourceConfig(current, hosts, data.get("network_interface_name"))
