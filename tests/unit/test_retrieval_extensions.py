"""The opt-in extensions for retrieval embeddings.

* In-batch softmax (``in_batch_softmax_weight``, ``in_batch_softmax_temperature``): the loss on literal
  tensors, the default that changes nothing, the cross-key rule, and that it trains single-side
  embeddings to find their partner among the batch's other documents.
* IDF token weighting (``token_weighting=idf``): document frequencies and weights on literal data, the
  weighted mean, training and eval modes agreeing, and the weights travelling in the artifact.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from object2vec.artifact import load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.records import PairData, Side
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens
from object2vec.training.checkpoint import load_checkpoint, save_checkpoint
from object2vec.training.metrics import MetricLogger
from object2vec.training.trainer import Trainer, document_frequency, in_batch_softmax_loss

QUIET = MetricLogger("algo-1", logging.getLogger("test"), enabled=False)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add waiting on a busy 2-core machine
    yield
    torch.set_num_threads(threads)


def side(seqs: list[list[int]]) -> Side:
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Side(np.array([t for s in seqs for t in s], dtype=np.int32), offsets)


def topic_pairs(n: int = 96, topics: int = 24, seed: int = 0) -> PairData:
    """(query, document) pairs, label 1: both sides draw tokens from the pair's own topic (ids
    ``4 t .. 4 t + 3``) plus shared noise tokens (ids >= 4 * topics)."""
    rng = np.random.default_rng(seed)
    noise = np.arange(4 * topics, 4 * topics + 8)
    q, d = [], []
    for k in range(n):
        own = 4 * (k % topics) + np.arange(4)
        q.append([int(rng.choice(own)), int(rng.choice(noise))])
        d.append([int(t) for t in rng.choice(own, 3)] + [int(t) for t in rng.choice(noise, 3)])
    return PairData(side(q), side(d), np.ones(n, dtype=np.int64))


def hp_for(**over):
    raw = dict(enc0_max_seq_len="8", enc0_vocab_size="104", enc0_network="pooled_embedding",
               enc_dim="16", mlp_dim="8", mini_batch_size="32", epochs="1", learning_rate="0.05",
               negative_sampling_rate="1", tied_token_embedding_weight="true",
               token_embedding_storage_type="row_sparse")
    raw.update({k: str(v) for k, v in over.items()})
    return parse_hyperparameters(raw)


def trained(hp, data: PairData, seed: int = 0) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(hp, {"train": data}, QUIET, seed=seed)
    trainer.train()
    return trainer


def retrieval_hits_at_1(trainer: Trainer, data: PairData, topics: int = 24) -> float:
    """Fraction of the first ``topics`` queries whose own document (of the first ``topics``) has the
    highest cosine similarity; both embedded through enc0, as the document benchmark does."""
    model = trainer.model.eval()

    def embed(s: Side) -> torch.Tensor:
        seqs = [s.ids[s.offsets[i]:s.offsets[i + 1]].tolist() for i in range(topics)]
        with torch.no_grad():
            return torch.nn.functional.normalize(model.encode(0, Tokens.from_lists(seqs)), dim=1)

    sims = embed(data.in0) @ embed(data.in1).T  # (topics, topics)
    return float((sims.argmax(1) == torch.arange(topics)).float().mean())


# -- the loss itself -----------------------------------------------------------------------------------


def test_loss_on_literal_tensors():
    """Two orthogonal pairs at temperature 1: each row's logits are (1, 0), so both directions give
    -log(e / (e + 1))."""
    eye = torch.eye(2)
    expected = -math.log(math.e / (math.e + 1))
    assert in_batch_softmax_loss(eye, eye, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # scale does not matter (cosine), temperature does
    assert in_batch_softmax_loss(3 * eye, 0.5 * eye, 1.0).item() == pytest.approx(expected, rel=1e-6)
    sharp = -math.log(math.exp(10) / (math.exp(10) + 1))
    assert in_batch_softmax_loss(eye, eye, 0.1).item() == pytest.approx(sharp, rel=1e-3)  # float32


def test_loss_is_symmetric_and_prefers_the_right_partner():
    """Swapping the sides gives the same loss; matched pairs score lower than shuffled ones."""
    u = torch.randn(6, 5)
    v = u + 0.1 * torch.randn(6, 5)
    matched = in_batch_softmax_loss(u, v, 0.1)
    assert in_batch_softmax_loss(v, u, 0.1).item() == pytest.approx(matched.item(), rel=1e-6)
    assert matched < in_batch_softmax_loss(u, v[torch.tensor([1, 2, 3, 4, 5, 0])], 0.1)


# -- hyperparameters -------------------------------------------------------------------------------------


def test_defaults_are_off():
    hp = hp_for()
    assert hp.in_batch_softmax_weight == 0.0 and hp.in_batch_softmax_temperature == 0.05


@pytest.mark.parametrize("extra", [{"output_layer": "mean_squared_error"}, {"num_classes": "3"}])
def test_needs_binary_softmax(extra):
    with pytest.raises(UserError, match="in_batch_softmax_weight=0.5: needs output_layer=softmax"):
        hp_for(in_batch_softmax_weight="0.5", **extra)
    hp_for(in_batch_softmax_weight="0", **extra)  # off: anything goes


# -- training --------------------------------------------------------------------------------------------


def test_weight_zero_trains_exactly_as_without_the_key():
    """The default keeps today's behaviour bit for bit; a positive weight changes the training."""
    data = topic_pairs()
    without = trained(hp_for(), data).model.state_dict()
    zero = trained(hp_for(in_batch_softmax_weight="0"), data).model.state_dict()
    on = trained(hp_for(in_batch_softmax_weight="1"), data).model.state_dict()
    assert all(torch.equal(without[k], zero[k]) for k in without)
    assert not all(torch.equal(without[k], on[k]) for k in without)


@pytest.mark.parametrize("storage", ["row_sparse", "dense"])
def test_in_batch_softmax_teaches_embeddings_to_find_their_document(storage):
    """After a few epochs with the in-batch loss, a query's embedding is nearest to its own
    document's among the others (the task the classifier loss alone learns only indirectly)."""
    data = topic_pairs()
    hp = hp_for(in_batch_softmax_weight="1", in_batch_softmax_temperature="0.1", epochs="8",
                token_embedding_storage_type=storage)
    assert retrieval_hits_at_1(trained(hp, data), data) >= 0.9


def test_resume_accepts_a_checkpoint_written_before_the_keys_existed(tmp_path, caplog):
    """A checkpoint whose hyperparameters lack the new keys (written by an older container) resumes:
    a missing key means its default. Another value is another job's checkpoint: a warning naming
    the key, and training starts from scratch."""
    data = topic_pairs()
    hp = hp_for(epochs="2")
    first = Trainer(hp, {"train": data}, QUIET, checkpoint_dir=tmp_path)
    first.train()
    state = load_checkpoint(tmp_path)
    for key in ("in_batch_softmax_weight", "in_batch_softmax_temperature"):
        del state["fingerprint"]["hyperparameters"][key]
    save_checkpoint(tmp_path, state)
    assert Trainer(hp, {"train": data}, QUIET, checkpoint_dir=tmp_path).resume()
    changed = Trainer(hp_for(epochs="2", in_batch_softmax_weight="1"), {"train": data}, QUIET,
                      checkpoint_dir=tmp_path)
    caplog.clear()
    assert not changed.resume()
    assert changed.start_epoch == 0
    assert "in_batch_softmax_weight" in caplog.text and "from scratch" in caplog.text


# -- IDF token weighting --------------------------------------------------------------------------------


def test_document_frequency_counts_sequences_not_occurrences():
    s = side([[0, 0, 1], [1, 2], [0]])
    assert document_frequency(s, 4).tolist() == [2, 2, 1, 0]


def test_idf_weights_come_from_both_sides_of_a_tied_table():
    """Tied: N = 2 x 3 sequences; token 0 is in 3 of them, token 1 in 2, token 5 in none."""
    data = PairData(side([[0, 1], [0], [2]]), side([[0], [1, 1], [3]]),
                    np.ones(3, dtype=np.int64))
    trainer = Trainer(hp_for(token_weighting="idf", enc0_vocab_size="6"), {"train": data}, QUIET)
    weights = trainer.model.embedding(0).pool_weight
    expected = [math.log(7 / (1 + df)) + 1 for df in (3, 2, 1, 1, 0, 0)]
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert len(trainer.model.embeddings) == 1


def test_weighted_mean_and_training_mode_agree_with_the_formula():
    """The pooled encoding is sum w_t e_t / sum w_t, the same through the per-batch row view
    (training) and the whole table (eval)."""
    torch.manual_seed(0)
    hp = hp_for(token_weighting="idf", dropout="0", enc0_vocab_size="10")
    from object2vec.model.object2vec import ModelConfig, Object2Vec

    model = Object2Vec(ModelConfig.from_hyperparameters(hp))
    table = model.embedding(0)
    table.pool_weight.copy_(torch.arange(1, 11, dtype=torch.float32))
    seqs = [[0, 3, 3], [9], [4, 1]]
    tokens = Tokens.from_lists(seqs)
    got = model.encode(0, tokens)
    for row, seq in zip(got, seqs):
        w = table.pool_weight[seq]
        assert torch.allclose(row, (w[:, None] * table.weight[seq]).sum(0) / w.sum(), atol=1e-6)
    other = Tokens.from_lists([[2], [5, 6], [7, 8, 8]])
    model.eval()
    eval_out = model(tokens, other)
    model.train()
    assert torch.allclose(model(tokens, other), eval_out, atol=1e-6)


def test_default_models_have_no_weights_and_idf_weights_travel_in_the_artifact(tmp_path):
    """Without token_weighting the state dict is what it always was (older artifacts load); with
    it, the trained weights are saved and the served encodings are the trained model's."""
    data = topic_pairs()
    plain = trained(hp_for(), data).model
    assert not any("pool_weight" in k for k in plain.state_dict())
    hp = hp_for(token_weighting="idf")
    model = trained(hp, data).model.eval()
    save_artifact(tmp_path, model, hp)
    loaded = load_artifact(tmp_path).model
    assert torch.equal(loaded.embedding(0).pool_weight, model.embedding(0).pool_weight)
    assert float(model.embedding(0).pool_weight.max()) > float(model.embedding(0).pool_weight.min())
    tokens = Tokens.from_lists([[0, 1, 96], [50, 97, 98, 99]])
    with torch.no_grad():
        assert torch.equal(loaded.encode(0, tokens), model.encode(0, tokens))


def test_idf_needs_a_pooled_embedding_encoder():
    with pytest.raises(UserError, match="token_weighting=idf: weights the mean of a pooled_embedding"):
        hp_for(token_weighting="idf", enc0_network="hcnn")
    hp_for(token_weighting="idf", enc0_network="hcnn", enc1_network="pooled_embedding",
           enc1_vocab_size="104", enc1_max_seq_len="8", tied_token_embedding_weight="false",
           enc0_token_embedding_dim="16")
