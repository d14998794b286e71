"""A transformer encoder's training step on CUDA (tools/gpu_check.py runs ``-m cuda``): mixed
precision as ``mixed_precision`` asks, the update finite, the model's outputs close to full
precision's. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CUDA_ONLY, QUIET, side, tiny_transformer

from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.batching import make_batch
from object2vec.data.pretrained_model import resolve_transformers
from object2vec.data.records import PairData

pytestmark = list(CUDA_ONLY)


def trainer(tmp_path, mixed_precision: str, device: str = "cuda"):
    from object2vec.training.trainer import Trainer

    tiny_transformer(tmp_path / "tiny")
    hp = parse_hyperparameters({"enc0_network": "transformer", "enc0_pretrained_model": "tiny",
                                "enc0_max_seq_len": "12", "enc_dim": "16", "mini_batch_size": "8",
                                "tied_token_embedding_weight": "true", "in_batch_softmax_weight": "1",
                                "mixed_precision": mixed_precision})
    hp, folders = resolve_transformers(hp, tmp_path)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(5, 40, int(rng.integers(1, 12))).tolist() for _ in range(16)]
    data = PairData(side(seqs[:8]), side(seqs[8:]), np.ones(8, dtype=np.int64))
    torch.manual_seed(0)
    return Trainer(hp, {"train": data}, QUIET, device=device, pretrained=folders), data


@pytest.mark.parametrize("mode,dtype", [("auto", "bf16 where supported"), ("fp16", torch.float16),
                                        ("off", None)])
def test_a_training_step_under_each_mixed_precision_mode(tmp_path, mode, dtype):
    t, data = trainer(tmp_path, mode)
    if dtype == "bf16 where supported":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert t.amp_dtype == dtype
    assert t.scaler.is_enabled() == (dtype == torch.float16)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    batch = make_batch(data, np.arange(8), np.arange(8), data.labels)
    stats = t.train_step(batch)
    assert all(torch.isfinite(v).all() for v in stats.values())
    after = t.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(before["encoders.0.transformer.encoder.layer.0.attention.self.query.weight"],
                           after["encoders.0.transformer.encoder.layer.0.attention.self.query.weight"])
