"""Checkpoints resume only the job that wrote them.

* The data digest of a channel: what a change of content, size or name does to it, that it reads
  only sampled blocks of a large file (and so what it cannot see), and how the hosts' digests
  combine.
* ``Trainer.resume``: the same fingerprint resumes; other data, other hyperparameters, a file that
  is not a usable checkpoint (truncated, not a checkpoint, keys missing, an old format, weights of
  another shape) each log one WARNING and leave a fresh model; a checkpoint written before a
  hyperparameter existed resumes while that key has its default.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import QUIET, retrieval_hp, tiny_data, tolerance, topic_pairs

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.training.checkpoint import (
    BLOCK,
    CHECKPOINT_FILE,
    channel_digest,
    combine_digests,
    file_digest,
    load_checkpoint,
    sample_offsets,
    save_checkpoint,
)
from object2vec.training.trainer import Trainer, TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")

DIGEST = {"train": ["a" * 64], "validation": ["b" * 64]}

# -- the data digest -------------------------------------------------------------------------------


def test_file_digest_sees_content_size_and_is_stable(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"in0": [1], "in1": [2], "label": 1}\n' * 10)
    first = file_digest(path)
    assert file_digest(path) == first
    path.write_bytes(b'{"in0": [1], "in1": [2], "label": 0}\n' * 10)  # same size, other bytes
    assert file_digest(path) != first
    path.write_bytes(b'{"in0": [1], "in1": [2], "label": 1}\n' * 11)
    assert file_digest(path) != first


def test_a_large_file_is_sampled_in_a_few_blocks(tmp_path):
    """A 4 MiB file: head, tail and evenly spaced middle blocks are read, nothing else. A change in
    any of them shows; a same-size change between them does not (the documented blind spot)."""
    size = 4 * 1024 * 1024
    data = bytearray(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    path = tmp_path / "big"
    path.write_bytes(data)
    offsets = sample_offsets(size)
    assert offsets[0] == 0 and offsets[-1] == size - BLOCK
    assert 3 <= len(offsets) <= 10 and len(offsets) * BLOCK < size // 16  # cheap
    before = file_digest(path)
    for offset in (offsets[0], offsets[len(offsets) // 2] + BLOCK // 2, size - 1):
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        path.write_bytes(changed)
        assert file_digest(path) != before, offset
    unseen = next(o for o in range(0, size, 997)
                  if not any(s <= o < s + BLOCK for s in offsets))
    changed = bytearray(data)
    changed[unseen] ^= 0xFF
    path.write_bytes(changed)
    assert file_digest(path) == before


def test_channel_digest_covers_every_file_by_relative_path(tmp_path):
    channel = tmp_path / "train"
    (channel / "part").mkdir(parents=True)
    (channel / "a.jsonl").write_text("x\n")
    (channel / "part" / "b.jsonl").write_text("y\n")
    first = channel_digest(channel)
    (channel / "part" / "b.jsonl").rename(channel / "part" / "c.jsonl")
    assert channel_digest(channel) != first
    (channel / "part" / "c.jsonl").rename(channel / "part" / "b.jsonl")
    assert channel_digest(channel) == first
    (channel / "part" / "d.jsonl").write_text("")
    assert channel_digest(channel) != first


def test_hosts_digests_combine_in_host_order_and_collapse_when_equal():
    """Replicated channels (every host the same) give one digest whatever the host count;
    sharded ones give each host's in rank order. Ranks other than a host's first send None."""
    gathered = [{"train": "t0", "validation": "v"}, None, {"train": "t1", "validation": "v"}, None]
    assert combine_digests(gathered) == {"train": ["t0", "t1"], "validation": ["v"]}
    assert combine_digests([{"train": "t"}]) == {"train": ["t"]}
    assert combine_digests([{"train": "t"}, {"train": "t"}]) == {"train": ["t"]}


# -- resume ----------------------------------------------------------------------------------------


def hp(**over):
    raw = {"enc0_max_seq_len": "4", "enc0_vocab_size": "20", "enc0_network": "pooled_embedding",
           "enc_dim": "4", "mlp_dim": "4", "epochs": "2", "learning_rate": "0.05"}
    return parse_hyperparameters({**raw, **over})


def trainer(directory: Path, digest=DIGEST, device="cpu", stop_requested=lambda: False,
            **over) -> Trainer:
    torch.manual_seed(0)
    return Trainer(hp(**over), {"train": tiny_data()}, QUIET, checkpoint_dir=directory,
                   data_digest=digest, device=device, stop_requested=stop_requested)


@pytest.fixture
def finished(tmp_path) -> Path:
    """A checkpoint folder holding the state after both epochs of ``trainer(tmp_path)``."""
    trainer(tmp_path).train()
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    return tmp_path


def fresh_weights() -> dict[str, torch.Tensor]:
    return trainer(None).model.state_dict()


def assert_fresh(t: Trainer) -> None:
    assert (t.start_epoch, t.start_batch, t.result.history) == (0, 0, [])
    for key, value in fresh_weights().items():
        assert torch.equal(t.model.state_dict()[key], value), key


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_same_job_resumes(finished, caplog):
    t = trainer(finished)
    assert t.resume()
    assert t.start_epoch == 2 and len(t.result.history) == 2
    assert warnings_of(caplog) == []


def test_a_run_stopped_on_the_device_resumes_there_to_the_same_weights(tmp_path, device):
    """A checkpoint written mid-epoch from ``device`` (weights and both optimizers' state there)
    resumes onto it, and the resumed run ends with the weights of the run that was not stopped."""
    over = {"token_embedding_storage_type": "row_sparse", "mini_batch_size": "8", "device": device}
    whole = trainer(None, **over)
    whole.train()
    steps = iter(range(100))
    with pytest.raises(TrainingInterrupted, match="epoch 1 after batch 3"):
        trainer(tmp_path, stop_requested=lambda: next(steps) == 10, **over).train()  # 8 per epoch
    resumed = trainer(tmp_path, **over)
    assert resumed.resume() and (resumed.start_epoch, resumed.start_batch) == (1, 3)
    resumed.train()
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, **tolerance(device))


def test_other_data_is_not_resumed(finished, caplog):
    t = trainer(finished, digest={**DIGEST, "train": ["c" * 64]})
    assert not t.resume()
    assert_fresh(t)
    (warning,) = warnings_of(caplog)
    assert str(finished / CHECKPOINT_FILE) in warning and "'train'" in warning
    assert "'validation'" not in warning and "hyperparameters" not in warning


def test_a_channel_the_checkpoint_did_not_have_is_other_data(finished, caplog):
    t = trainer(finished, digest={**DIGEST, "test": ["d" * 64]})
    assert not t.resume()
    assert "'test'" in warnings_of(caplog)[0]


def test_other_hyperparameters_are_not_resumed(finished, caplog):
    t = trainer(finished, learning_rate="0.02", epochs="3")
    assert not t.resume()
    assert_fresh(t)
    (warning,) = warnings_of(caplog)
    assert "hyperparameters" in warning and "epochs" in warning and "learning_rate" in warning
    assert "'train'" not in warning


def test_a_key_the_checkpoint_lacks_counts_as_its_default(finished, caplog):
    """A checkpoint written before a hyperparameter existed still resumes while that key has its
    default value."""
    state = load_checkpoint(finished)
    del state["fingerprint"]["hyperparameters"]["token_weighting"]
    save_checkpoint(finished, state)
    assert trainer(finished).resume()
    assert not trainer(finished, token_weighting="idf").resume()
    assert "token_weighting" in warnings_of(caplog)[0]


def damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:500])


def damage_text(path: Path) -> None:
    path.write_text("not a checkpoint\n")


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_list(path: Path) -> None:
    torch.save([1, 2, 3], path)


def damage_missing_keys(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    del state["model"], state["rng"]
    torch.save(state, path)


def damage_old_format(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["version"] = 1
    torch.save(state, path)


def damage_shapes(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"]["mlp.0.weight"] = torch.zeros(3, 3)
    torch.save(state, path)


def damage_unreadable(path: Path) -> None:
    path.unlink()
    path.mkdir()  # a directory where the file should be: open() fails


DAMAGE = {f.__name__[7:]: f for f in (damage_truncate, damage_text, damage_empty, damage_list,
                                      damage_missing_keys, damage_old_format, damage_shapes,
                                      damage_unreadable)}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_an_unusable_checkpoint_is_warned_about_and_ignored(finished, caplog, damage):
    path = finished / CHECKPOINT_FILE
    damage(path)
    t = trainer(finished)
    assert not t.resume()
    assert_fresh(t)
    (warning,) = warnings_of(caplog)
    assert str(path) in warning and "from scratch" in warning, warning


def test_the_fresh_run_overwrites_the_other_job_s_checkpoint(finished):
    t = trainer(finished, learning_rate="0.02")
    assert not t.resume()
    t.train()
    assert load_checkpoint(finished)["fingerprint"]["hyperparameters"]["learning_rate"] == 0.02
    assert trainer(finished, learning_rate="0.02").resume()


def test_resume_accepts_a_checkpoint_written_before_the_keys_existed(tmp_path, caplog):
    """A checkpoint whose hyperparameters lack the new keys (written by an older container) resumes:
    a missing key means its default. Another value is another job's checkpoint: a warning naming
    the key, and training starts from scratch."""
    data = topic_pairs()
    hp = retrieval_hp(epochs="2")
    first = Trainer(hp, {"train": data}, QUIET, checkpoint_dir=tmp_path)
    first.train()
    state = load_checkpoint(tmp_path)
    for key in ("in_batch_softmax_weight", "in_batch_softmax_temperature"):
        del state["fingerprint"]["hyperparameters"][key]
    save_checkpoint(tmp_path, state)
    assert Trainer(hp, {"train": data}, QUIET, checkpoint_dir=tmp_path).resume()
    changed = Trainer(retrieval_hp(epochs="2", in_batch_softmax_weight="1"), {"train": data}, QUIET,
                      checkpoint_dir=tmp_path)
    caplog.clear()
    assert not changed.resume()
    assert changed.start_epoch == 0
    assert "in_batch_softmax_weight" in caplog.text and "from scratch" in caplog.text
