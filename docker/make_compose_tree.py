#!/usr/bin/env python3
"""Generate the per-host SageMaker trees that docker/compose.yaml mounts at /opt/ml.

    python docker/make_compose_tree.py --quick          # .demo/compose/algo-1 and algo-2
    docker compose -f docker/compose.yaml up --build --abort-on-container-exit
    docker compose -f docker/compose.yaml down

As SageMaker local mode does for ``instance_count=2``: every host gets its own
``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`` (the same job, a different
``current_host``; ``hosts`` sorted) and the same FullyReplicated MovieLens channels. Only global
rank 0 (on algo-1) writes ``model/``. Set ``O2V_COMPOSE_ROOT`` (an absolute path) when you pass a
different ``--root``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / ".demo" / "compose"
HOSTS = ("algo-1", "algo-2")  # the service names in compose.yaml


def load_make_test_dir() -> ModuleType:
    """``local_test/make_test_dir.py`` (and its ``datasets`` sibling), loaded from their files."""
    local_test = REPO / "local_test"
    if str(local_test) not in sys.path:  # make_test_dir imports its sibling `datasets`
        sys.path.insert(0, str(local_test))
    spec = importlib.util.spec_from_file_location("make_test_dir", local_test / "make_test_dir.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{local_test / 'make_test_dir.py'} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_trees(root: Path, epochs: int, quick: bool, users: int | None,
               hosts: Sequence[str] = HOSTS) -> dict[str, dict[str, int]]:
    """One tree per host under ``root``; returns the record counts per host and channel."""
    mtd = load_make_test_dir()
    root.mkdir(parents=True, exist_ok=True)
    return {host: mtd.make_tree(root / host, epochs, quick, users,
                                resource=mtd.resource_config(host, hosts))
            for host in hosts}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    mtd = load_make_test_dir()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"folder for the host trees (default {DEFAULT_ROOT})")
    parser.add_argument("--quick", action="store_true", help="small subset and model")
    parser.add_argument("--epochs", type=mtd.positive_int, help="epochs (default as make_test_dir)")
    parser.add_argument("--users", type=mtd.positive_int, help="only users 1..N")
    args = parser.parse_args(argv)
    epochs = args.epochs or (mtd.QUICK_EPOCHS if args.quick else mtd.DEFAULT_EPOCHS)
    users = args.users or (mtd.QUICK_USERS if args.quick else None)
    try:
        counts = make_trees(args.root.resolve(), epochs, args.quick, users)
    except (ValueError, OSError, mtd.datasets.DatasetError) as exc:
        print(f"make_compose_tree.py: error: {exc}", file=sys.stderr)
        return 2
    for host, per_channel in counts.items():
        print(f"{args.root.resolve() / host}: "
              + ", ".join(f"{name} {n} records" for name, n in per_channel.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
