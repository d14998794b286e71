"""object2vec.training.main: the job's data digest (for checkpoints) covers every host's
channels, and there is none without checkpointing."""

from __future__ import annotations

import pytest
from helpers import make_tree

from object2vec.platform.paths import SageMakerPaths
from object2vec.training.checkpoint import channel_digest
from object2vec.training.distributed import DistEnv
from object2vec.training.main import data_digest

pytestmark = pytest.mark.usefixtures("one_thread")


class TwoHosts(DistEnv):
    """Rank 0 of a two-host job whose other host reports ``other`` (no process group)."""

    other: dict | None = None

    def any(self, flag: bool) -> bool:
        return flag

    def all_gather_object(self, obj):
        return [obj, self.other]


def test_every_host_s_digest_is_part_of_the_job_s(tmp_path):
    base = make_tree(tmp_path / "job", {}, {"train": [{"in0": [1], "in1": [1], "label": 0}]})
    paths = SageMakerPaths(base)
    (base / "checkpoints").mkdir()
    alone = data_digest(paths, ["train"], DistEnv())
    assert alone == {"train": [channel_digest(base / "input" / "data" / "train")]}
    dist = TwoHosts(rank=0, local_rank=0, world_size=2, local_world_size=1)
    object.__setattr__(dist, "other", {"train": "another shard"})
    assert data_digest(paths, ["train"], dist) == {"train": alone["train"] + ["another shard"]}
    object.__setattr__(dist, "other", {"train": alone["train"][0]})
    assert data_digest(paths, ["train"], dist) == alone


def test_no_digest_without_checkpointing(tmp_path):
    base = make_tree(tmp_path / "job", {}, {"train": [{"in0": [1], "in1": [1], "label": 0}]})
    assert data_digest(SageMakerPaths(base), ["train"], DistEnv()) is None
