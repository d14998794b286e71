"""``encN_network=transformer`` (object2vec.model.transformer, object2vec.data.pretrained_model) on a
tiny random BERT folder (``helpers.tiny_transformer``):

* a model folder: what a good one gives (architecture, the tokenizer's [CLS]/[SEP]), and each bad
  one refused with a UserError naming the file (no folder, no or unreadable config.json, no
  safetensors weights, pickle-only weights, no tokenizer.json, a tokenizer larger than the model);
* the encoder gives what the Hugging Face model gives (mean and cls pooling, sequences of several
  lengths in one batch), and the trainer's row-gathering path gives what ``encode`` gives;
* tied sides are one encoder and one table; cloned untied sides are two equal copies; the
  projection to ``enc_dim``;
* the hyperparameter rules and what ``resolve_transformers`` checks against the folder;
* the artifact round trip (identical outputs; the folder is a Hugging Face model folder);
* the trainer: the second learning rate, frozen layers, gradient accumulation.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import QUIET, side, tiny_transformer, tolerance
from safetensors.torch import load_file
from torch import nn

from object2vec.artifact import WEIGHTS_FILE, load_artifact, save_artifact
from object2vec.config.hyperparameters import parse_hyperparameters
from object2vec.data.pretrained_model import (
    load_transformer_weights,
    read_model_folder,
    read_weights,
    resolve_transformers,
    specs,
)
from object2vec.data.records import PairData
from object2vec.errors import UserError
from object2vec.model.object2vec import ModelConfig, Object2Vec
from object2vec.model.tokens import Tokens
from object2vec.training.sparse import gather_rows
from object2vec.training.trainer import Trainer, TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "tiny"
WHERE = "enc0_pretrained_model tiny"
CLS, SEP = 2, 3  # the tiny tokenizer's [CLS] and [SEP] ids
# sequences of word ids (5.. are TINY_WORDS) of different lengths: one batch pads them
SEQS = [[8, 9, 10], [15], [5, 6, 7, 20, 21, 22, 23], [30, 31]]


@pytest.fixture(scope="module")
def aux(tmp_path_factory) -> Path:
    """An auxiliary channel holding the tiny model folder ``tiny`` (2 layers, hidden size 16)."""
    root = tmp_path_factory.mktemp("auxiliary")
    tiny_transformer(root / NAME)
    return root


@pytest.fixture(scope="module")
def still_aux(tmp_path_factory) -> Path:
    """The same model without dropout (training steps are then deterministic functions of the batch)."""
    root = tmp_path_factory.mktemp("auxiliary_no_dropout")
    folder = tiny_transformer(root / NAME)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return root


def thp(**over):
    raw = {"enc0_network": "transformer", "enc0_pretrained_model": NAME, "enc0_max_seq_len": "10",
           "enc_dim": "16", "mlp_dim": "8", "dropout": "0"}
    return parse_hyperparameters({**raw, **{k: str(v) for k, v in over.items()}})


def build(aux_dir: Path, **over) -> tuple[Object2Vec, object, tuple]:
    """The model of ``thp(**over)`` with the folder's pretrained weights, in eval mode."""
    hp, folders = resolve_transformers(thp(**over), aux_dir)
    torch.manual_seed(0)
    model = Object2Vec(ModelConfig.from_hyperparameters(hp, specs(folders)))
    for s, folder in enumerate(folders):
        if folder is not None and not (s == 1 and model.encoders[1] is model.encoders[0]):
            load_transformer_weights(model, s, read_weights(folder.weight_files, WHERE), WHERE)
    return model.eval(), hp, folders


def hf_hidden(folder: Path, ids: list[int]) -> torch.Tensor:
    """The Hugging Face model's last hidden state of one sequence with its special tokens ``(T+2, H)``."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        return hf(input_ids=torch.tensor([[CLS, *ids, SEP]])).last_hidden_state[0]


def encode(model: Object2Vec, s: int, seqs: list[list[int]], device: torch.device | str = "cpu"
           ) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode(s, Tokens.from_lists(seqs, device))


# -- reading a model folder --------------------------------------------------------------------------


def test_a_good_folder_gives_its_architecture_and_special_tokens(aux):
    folder = read_model_folder(aux / NAME, WHERE)
    assert folder.spec.hidden_size == 16 and folder.spec.vocab_size == 40
    assert folder.spec.max_positions == 40 and folder.spec.settings["num_hidden_layers"] == 2
    vocab = folder.tokenizer.vocab()
    assert folder.spec.prefix == (vocab["[CLS]"],) == (CLS,)
    assert folder.spec.suffix == (vocab["[SEP]"],) == (SEP,)
    assert [p.name for p in folder.weight_files] == ["model.safetensors"]


def damaged(aux: Path, tmp_path: Path, *remove: str) -> Path:
    """A copy of the tiny folder without ``remove``."""
    folder = tmp_path / "copy"
    shutil.copytree(aux / NAME, folder)
    for name in remove:
        (folder / name).unlink()
    return folder


def test_no_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match=re.escape(f"{WHERE}: 'nowhere' is not a folder")):
        read_model_folder(tmp_path / "nowhere", WHERE)


def test_no_config_is_refused(aux, tmp_path):
    with pytest.raises(UserError, match=re.escape(f"{WHERE}: the folder has no config.json")):
        read_model_folder(damaged(aux, tmp_path, "config.json"), WHERE)


@pytest.mark.parametrize("text, words", [
    ("{not json", "config.json is not readable JSON"),
    ('{"model_type": "bert"}', "config.json is not a Hugging Face model config: it has no hidden_size, "
                               "vocab_size"),
    ('{"model_type": "no-such-model", "hidden_size": 16, "vocab_size": 40}',
     "model_type 'no-such-model' is not one the transformers library builds"),
])
def test_an_unreadable_config_is_refused(aux, tmp_path, text, words):
    folder = damaged(aux, tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(UserError, match=re.escape(words)):
        read_model_folder(folder, WHERE)


def test_no_weights_are_refused(aux, tmp_path):
    with pytest.raises(UserError, match=re.escape("the folder has no model.safetensors")):
        read_model_folder(damaged(aux, tmp_path, "model.safetensors"), WHERE)


def test_pickle_only_weights_are_refused_not_unpickled(aux, tmp_path):
    folder = damaged(aux, tmp_path, "model.safetensors")
    torch.save(load_file(str(aux / NAME / "model.safetensors")), folder / "pytorch_model.bin")
    with pytest.raises(UserError) as err:
        read_model_folder(folder, WHERE)
    message = str(err.value)
    assert message.startswith(f"{WHERE}: ") and "pytorch_model.bin" in message
    assert "pickle" in message and "safetensors" in message


def test_sharded_safetensors_are_read(aux, tmp_path):
    """model.safetensors.index.json and its shards instead of one file; a shard it names that is
    missing is refused."""
    from safetensors.torch import save_file

    folder = damaged(aux, tmp_path, "model.safetensors")
    state = load_file(str(aux / NAME / "model.safetensors"))
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(folder / name), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, part in halves.items() for k in part}}))
    read = read_weights(read_model_folder(folder, WHERE).weight_files, WHERE)
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UserError, match="names shards that are not in the folder: model-00002-of-00002"):
        read_model_folder(folder, WHERE)


def test_unreadable_safetensors_are_refused(aux, tmp_path):
    folder = damaged(aux, tmp_path)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match=re.escape(f"{WHERE}: model.safetensors is not readable safetensors")):
        read_weights(read_model_folder(folder, WHERE).weight_files, WHERE)


def test_no_tokenizer_is_refused(aux, tmp_path):
    with pytest.raises(UserError, match=re.escape(f"{WHERE}: the folder has no tokenizer.json")):
        read_model_folder(damaged(aux, tmp_path, "tokenizer.json"), WHERE)


def test_a_tokenizer_larger_than_the_model_is_refused(aux, tmp_path):
    folder = damaged(aux, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 30}))
    with pytest.raises(UserError, match=re.escape("tokenizer.json has 40 tokens but config.json says "
                                                  "vocab_size=30")):
        read_model_folder(folder, WHERE)


def test_weights_of_another_model_are_refused_naming_them(aux, tmp_path):
    model, _, _ = build(aux)
    state = read_weights((aux / NAME / "model.safetensors",), WHERE)
    del state["encoder.layer.1.output.dense.weight"]
    with pytest.raises(UserError, match="the weights lack 1 of the model's tensors "
                                        r"\(encoder.layer.1.output.dense.weight\)"):
        load_transformer_weights(model, 0, state, WHERE)
    state = read_weights((aux / NAME / "model.safetensors",), WHERE)
    state["encoder.layer.0.output.dense.bias"] = torch.zeros(3)
    with pytest.raises(UserError, match=re.escape("encoder.layer.0.output.dense.bias (3,) (the model's: "
                                                  "(16,))")):
        load_transformer_weights(model, 0, state, WHERE)


def test_a_task_model_s_prefixed_keys_load(aux):
    """Weights saved from BertForMaskedLM carry ``bert.``: the prefix is found from the word table."""
    state = read_weights((aux / NAME / "model.safetensors",), WHERE)
    prefixed = {f"bert.{k}": v + 1 for k, v in state.items()}
    prefixed["cls.predictions.bias"] = torch.zeros(40)
    model, _, _ = build(aux)
    load_transformer_weights(model, 0, prefixed, WHERE)
    assert torch.equal(model.embedding(0).weight, state["embeddings.word_embeddings.weight"] + 1)


# -- the encoder is the Hugging Face model ---------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_encoder_gives_the_hugging_face_model_s_output(aux, pooling, device):
    """Each sequence of a padded batch: [CLS] ids [SEP] through the Hugging Face model (on the CPU),
    then the mean over every position (special tokens included) or position 0; the same batch one
    by one too."""
    model, _, _ = build(aux, enc0_transformer_pooling=pooling)
    model.to(device)
    got = encode(model, 0, SEQS, device).cpu()
    assert got.shape == (len(SEQS), 16)
    for i, ids in enumerate(SEQS):
        hidden = hf_hidden(aux / NAME, ids)
        expect = hidden.mean(0) if pooling == "mean" else hidden[0]
        torch.testing.assert_close(got[i], expect, **tolerance(device, 1e-5, 1e-5))
        torch.testing.assert_close(encode(model, 0, [ids], device)[0].cpu(), got[i],
                                   **tolerance(device, 1e-5, 1e-6))


def test_the_training_path_gives_what_encode_gives(aux):
    """The trainer reads gathered rows (the batch's ids and the special tokens, ``always_read``) with
    remapped ids; u, v equal ``encode`` on the raw tokens, for one shared table and for two."""
    in1 = [[11, 12], [13, 14, 15, 16], [17], [18, 19, 20]]
    for over in ({"tied_token_embedding_weight": "true"}, {}):
        model, _, _ = build(aux, **over)
        assert len(model.embeddings) == (1 if over else 2)
        for t in range(len(model.embeddings)):
            assert model.always_read(t).tolist() == [CLS, SEP] * (2 if over else 1)
        in0, in1_tokens = Tokens.from_lists(SEQS), Tokens.from_lists(in1)
        rows = gather_rows(model, in0, in1_tokens)
        assert all(CLS in view.ids and SEP in view.ids for view in rows.tables)
        with torch.inference_mode():
            out, u, v = model(rows.in0, rows.in1, tables=rows.tables, return_encodings=True)
            whole = model(in0, in1_tokens)
        torch.testing.assert_close(u, encode(model, 0, SEQS), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(v, encode(model, 1, in1), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out, whole, rtol=1e-6, atol=1e-6)


def test_a_sequence_longer_than_the_model_reads_is_cut(aux):
    """Serving may ask for more tokens than training did (infer_max_seqlens): the encoder reads the
    first 38 (40 positions less [CLS] and [SEP]), as a tokenizer's truncation would."""
    model, _, _ = build(aux)
    long = [5 + i % 30 for i in range(45)]
    got = encode(model, 0, [long, SEQS[0]])
    torch.testing.assert_close(got[0], encode(model, 0, [long[:38]])[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], encode(model, 0, [SEQS[0]])[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[0], hf_hidden(aux / NAME, long[:38]).mean(0), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def roberta_aux(aux, tmp_path_factory) -> Path:
    """A tiny RoBERTa folder (``roberta``): 42 position embeddings, of which positions 0 and 1 (up to
    the padding id) are never used, so it reads 40 positions; the tiny BERT's tokenizer."""
    from transformers import RobertaConfig, RobertaModel

    root = tmp_path_factory.mktemp("auxiliary_roberta")
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=42, pad_token_id=1)
                 ).save_pretrained(root / "roberta")
    shutil.copy(aux / NAME / "tokenizer.json", root / "roberta" / "tokenizer.json")
    return root


def test_a_roberta_model_reads_its_positions_after_the_padding_id(roberta_aux):
    """RoBERTa numbers positions from pad_token_id + 1: 42 embeddings hold 40 positions, so
    enc0_max_seq_len 38 is the most, and a sequence of 38 tokens gives the Hugging Face output."""
    from transformers import AutoModel

    over = {"enc0_pretrained_model": "roberta"}
    with pytest.raises(UserError, match=re.escape("reads at most 40 positions; set enc0_max_seq_len to at "
                                                  "most 38")):
        resolve_transformers(thp(enc0_max_seq_len=39, **over), roberta_aux)
    model, _, _ = build(roberta_aux, enc0_max_seq_len=38, **over)
    hf = AutoModel.from_pretrained(roberta_aux / "roberta").eval()
    ids = [5 + i % 30 for i in range(38)]
    with torch.inference_mode():
        expect = hf(input_ids=torch.tensor([[CLS, *ids, SEP]])).last_hidden_state[0].mean(0)
    got = encode(model, 0, [ids, ids + [6, 7]])  # the second: cut to the same 38
    torch.testing.assert_close(got[0], expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expect, rtol=1e-5, atol=1e-5)


# -- tied and untied sides, the projection -----------------------------------------------------------


def test_tied_sides_are_one_encoder_and_one_table(aux):
    model, _, _ = build(aux, tied_token_embedding_weight="true")
    assert model.encoders[0] is model.encoders[1]
    assert len(model.embeddings) == 1 and model.embedding(1) is model.embedding(0)
    params = list(model.parameters())
    assert len({id(p) for p in params}) == len(params)  # each parameter once
    torch.testing.assert_close(encode(model, 1, SEQS), encode(model, 0, SEQS), rtol=0, atol=0)


def test_untied_cloned_sides_are_two_encoders_that_start_equal(aux):
    model, hp, folders = build(aux)
    assert hp.enc1_network == "enc0" and folders[1] is folders[0]
    assert model.encoders[0] is not model.encoders[1] and len(model.embeddings) == 2
    assert torch.equal(model.embedding(0).weight, model.embedding(1).weight)
    zero, one = model.encoders[0].state_dict(), model.encoders[1].state_dict()
    assert zero.keys() == one.keys() and all(torch.equal(zero[k], one[k]) for k in zero)
    assert torch.equal(encode(model, 0, SEQS), encode(model, 1, SEQS))
    with torch.no_grad():
        model.embedding(1).weight.add_(1.0)  # the sides do not share the table
    assert not torch.equal(model.embedding(0).weight, model.embedding(1).weight)


def test_a_transformer_side_beside_another_encoder(aux):
    """enc1 of its own (pooled_embedding over ids): only enc0 reads the model folder."""
    model, hp, folders = build(aux, enc1_network="pooled_embedding", enc1_vocab_size="30",
                               enc1_max_seq_len="5", enc1_token_embedding_dim="16")
    assert folders[1] is None and hp.enc0_vocab_size == 40
    assert model.always_read(1).tolist() == []
    torch.testing.assert_close(encode(model, 0, SEQS)[1], hf_hidden(aux / NAME, SEQS[1]).mean(0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("enc_dim, projected", [(8, True), (24, True), (16, False)])
def test_a_projection_to_enc_dim_only_when_it_differs_from_the_hidden_size(aux, enc_dim, projected):
    model, _, _ = build(aux, enc_dim=enc_dim)
    proj = model.encoders[0].proj
    if projected:
        assert isinstance(proj, nn.Linear) and (proj.in_features, proj.out_features) == (16, enc_dim)
    else:
        assert isinstance(proj, nn.Identity)
    assert encode(model, 0, SEQS).shape == (len(SEQS), enc_dim)


# -- hyperparameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, words", [
    ({"enc0_pretrained_model": ""}, "enc0_pretrained_model: required when enc0_network=transformer"),
    ({"enc0_vocab_file": "vocab.json"}, "enc0_vocab_file='vocab.json': a transformer encoder brings its "
                                        "own tokenizer and token embeddings"),
    ({"enc0_tokenizer_file": "t.json"}, "enc0_tokenizer_file='t.json': a transformer encoder"),
    ({"enc0_pretrained_embedding_file": "v.txt"}, "enc0_pretrained_embedding_file='v.txt': a transformer"),
    ({"tied_token_embedding_weight": "true", "enc1_network": "transformer", "enc1_pretrained_model": NAME,
      "enc1_max_seq_len": "5"}, "shares one transformer between the sides: set enc1_network=enc0"),
    ({"tied_token_embedding_weight": "true", "enc1_network": "pooled_embedding", "enc1_max_seq_len": "5"},
     "set enc1_network=enc0"),
    ({"token_embedding_storage_type": "row_sparse"}, "token_embedding_storage_type=row_sparse: a "
                                                     "transformer's token table trains with its layers"),
    ({"enc1_network": "transformer", "enc1_max_seq_len": "5", "enc0_network": "pooled_embedding",
      "enc0_vocab_size": "30", "enc0_pretrained_model": ""},
     "enc1_pretrained_model: required when enc1_network=transformer"),
])
def test_settings_a_transformer_cannot_use_are_refused(raw, words):
    with pytest.raises(UserError, match=re.escape(words)):
        thp(**raw)


def test_fp16_loss_scaling_and_lazy_row_updates_are_refused_together():
    with pytest.raises(UserError, match=re.escape("mixed_precision=fp16: its loss scaling covers the dense")):
        parse_hyperparameters({"enc0_network": "pooled_embedding", "enc0_vocab_size": "30",
                               "enc0_max_seq_len": "5", "token_embedding_storage_type": "row_sparse",
                               "mixed_precision": "fp16"})


def test_the_vocabulary_size_comes_from_the_folder(aux):
    hp = thp()
    assert hp.enc0_vocab_size is None  # not required of a transformer side
    resolved, folders = resolve_transformers(hp, aux)
    assert resolved.enc0_vocab_size == 40
    assert folders[0].path == aux / NAME and folders[1] is folders[0]
    assert resolve_transformers(thp(enc0_vocab_size=40), aux)[0].enc0_vocab_size == 40  # the same: fine
    other = thp(enc1_network="transformer", enc1_pretrained_model=NAME, enc1_max_seq_len="5")
    resolved, folders = resolve_transformers(other, aux)
    assert resolved.enc1_vocab_size == 40 and folders[1] is not None and folders[1] is not folders[0]


def test_a_vocabulary_size_other_than_the_model_s_is_refused(aux):
    with pytest.raises(UserError, match=re.escape("enc0_vocab_size=50: the model in tiny has 40 tokens; "
                                                  "leave enc0_vocab_size out")):
        resolve_transformers(thp(enc0_vocab_size=50), aux)


def test_a_max_seq_len_past_the_model_s_positions_is_refused(aux):
    assert resolve_transformers(thp(enc0_max_seq_len=38), aux)[0].enc0_max_seq_len == 38  # 38 + 2 = 40
    with pytest.raises(UserError, match=re.escape("enc0_max_seq_len=39: with its 2 special tokens the "
                                                  "model in tiny reads at most 40 positions; set "
                                                  "enc0_max_seq_len to at most 38")):
        resolve_transformers(thp(enc0_max_seq_len=39), aux)


def test_the_folder_must_be_in_the_auxiliary_channel(aux, tmp_path):
    with pytest.raises(UserError, match="needs the 'auxiliary' channel"):
        resolve_transformers(thp(), None)
    with pytest.raises(UserError, match=re.escape("enc0_pretrained_model='other': folder not found in "
                                                  "the auxiliary channel")):
        resolve_transformers(thp(enc0_pretrained_model="other"), aux)
    (tmp_path / NAME).write_text("a file, not a folder")
    with pytest.raises(UserError, match="folder not found"):
        resolve_transformers(thp(), tmp_path)


def test_ids_models_are_unchanged_by_the_transformer_settings():
    """Without a transformer side, resolve_transformers returns the same hyperparameters."""
    hp = parse_hyperparameters({"enc0_network": "pooled_embedding", "enc0_vocab_size": "20",
                                "enc0_max_seq_len": "4"})
    assert resolve_transformers(hp, None) == (hp, (None, None))
    with pytest.raises(UserError, match="enc0_vocab_size: required"):
        parse_hyperparameters({"enc0_network": "pooled_embedding", "enc0_max_seq_len": "4"})


# -- the artifact ------------------------------------------------------------------------------------


def perturbed(model: Object2Vec) -> Object2Vec:
    """``model`` with every weight moved off the pretrained values (as fine-tuning does)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("tied", [False, True])
def test_the_artifact_round_trip_gives_identical_outputs(aux, tmp_path, tied):
    over = {"enc_dim": 8, "tied_token_embedding_weight": "true" if tied else "false"}
    model, hp, folders = build(aux, **over)
    perturbed(model)
    tokenizer = folders[0].tokenizer
    save_artifact(tmp_path, model, hp, text=(tokenizer, tokenizer),
                  transformer_tokenizers=(tokenizer, None if tied else tokenizer))
    desc = json.loads((tmp_path / "object2vec.json").read_text())
    assert desc["format_version"] == 3
    folder_of = {"in0": "transformer-in0", "in1": "transformer-in0" if tied else "transformer-in1"}
    assert desc["transformers"] == {s: {"folder": f, "prefix": [CLS], "suffix": [SEP]}
                                    for s, f in folder_of.items()}
    assert (tmp_path / "transformer-in1").exists() == (not tied)
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)["state_dict"]
    assert not [k for k in state if ".transformer." in k or k.startswith("embeddings.")]
    assert "encoders.0.proj.weight" in state and "mlp.0.weight" in state

    loaded = load_artifact(tmp_path).model
    assert (loaded.encoders[0] is loaded.encoders[1]) == tied and len(loaded.embeddings) == (1 if tied else 2)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    in1 = [[11, 12], [13], [14, 15, 16, 17], [18]]
    with torch.inference_mode():
        for s in (0, 1):
            tokens = Tokens.from_lists(SEQS)
            assert torch.equal(loaded.encode(s, tokens), model.encode(s, tokens))
        assert torch.equal(loaded.scores(Tokens.from_lists(SEQS), Tokens.from_lists(in1)),
                           model.scores(Tokens.from_lists(SEQS), Tokens.from_lists(in1)))


def test_the_artifact_of_a_transformer_beside_another_encoder(aux, tmp_path):
    """enc1 pooled_embedding over ids: its table stays in object2vec.pt, enc0's goes to its folder."""
    model, hp, folders = build(aux, enc1_network="pooled_embedding", enc1_vocab_size="30",
                               enc1_max_seq_len="5", enc1_token_embedding_dim="16")
    perturbed(model)
    save_artifact(tmp_path, model, hp, text=(folders[0].tokenizer, None),
                  transformer_tokenizers=(folders[0].tokenizer, None))
    assert sorted(json.loads((tmp_path / "object2vec.json").read_text())["transformers"]) == ["in0"]
    state = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)["state_dict"]
    assert "embeddings.1.weight" in state and "embeddings.0.weight" not in state
    loaded = load_artifact(tmp_path)
    assert loaded.text[0].vocab() == folders[0].tokenizer.vocab() and loaded.text[1] is None
    in1 = [[1, 2], [3], [4, 5, 6, 7], [8]]
    with torch.inference_mode():
        assert torch.equal(loaded.model.scores(Tokens.from_lists(SEQS), Tokens.from_lists(in1)),
                           model.scores(Tokens.from_lists(SEQS), Tokens.from_lists(in1)))


def test_the_artifact_s_folder_is_a_hugging_face_model_folder(aux, tmp_path):
    """transformer-in0 loads with AutoModel.from_pretrained and, with the projection, gives the
    loaded model's embeddings; it is also a model folder this container reads again."""
    from transformers import AutoModel

    model, hp, folders = build(aux, enc_dim=8, tied_token_embedding_weight="true")
    perturbed(model)
    save_artifact(tmp_path, model, hp, transformer_tokenizers=(folders[0].tokenizer, None))
    folder = tmp_path / "transformer-in0"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    hf = AutoModel.from_pretrained(folder).eval()
    assert torch.equal(hf.get_input_embeddings().weight, model.embedding(0).weight.detach())
    loaded = load_artifact(tmp_path).model
    with torch.inference_mode():
        for ids, got in zip(SEQS, loaded.encode(0, Tokens.from_lists(SEQS))):
            pooled = hf(input_ids=torch.tensor([[CLS, *ids, SEP]])).last_hidden_state[0].mean(0)
            torch.testing.assert_close(got, loaded.encoders[0].proj(pooled), rtol=1e-5, atol=1e-5)
    again = read_model_folder(folder, "again")
    assert again.spec.prefix == (CLS,) and again.spec.suffix == (SEP,)
    assert again.tokenizer.vocab() == folders[0].tokenizer.vocab()


def test_an_artifact_without_its_transformer_folder_is_refused(aux, tmp_path):
    model, hp, folders = build(aux, tied_token_embedding_weight="true")
    save_artifact(tmp_path, model, hp, transformer_tokenizers=(folders[0].tokenizer, None))
    shutil.rmtree(tmp_path / "transformer-in0")
    with pytest.raises(UserError, match="transformer folder transformer-in0 is not readable"):
        load_artifact(tmp_path)


# -- the trainer ---------------------------------------------------------------------------------------


def word_pairs(n: int = 48, seed: int = 0) -> PairData:
    """Pairs of word ids (5..39) of 1-6 tokens, labelled 1 when both start with the same parity."""
    rng = np.random.default_rng(seed)
    a = [[int(t) for t in rng.integers(5, 40, rng.integers(1, 7))] for _ in range(n)]
    b = [[int(t) for t in rng.integers(5, 40, rng.integers(1, 7))] for _ in range(n)]
    labels = np.array([int(x[0] % 2 == y[0] % 2) for x, y in zip(a, b)], dtype=np.int64)
    return PairData(side(a), side(b), labels)


def trainer(aux_dir: Path, device: torch.device | str = "cpu", **over) -> Trainer:
    raw = {"mini_batch_size": "16", "transformer_learning_rate": "0.01", "learning_rate": "0.01", **over}
    hp, folders = resolve_transformers(thp(**raw), aux_dir)
    torch.manual_seed(0)
    return Trainer(hp, {"train": word_pairs()}, QUIET, pretrained=folders, device=device)


def first_batch(t: Trainer):
    return t.sampler.plan(0).batch(t.sampler.records(0), 0)


def snapshot(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def test_the_trainer_loads_the_pretrained_weights(aux):
    t = trainer(aux, tied_token_embedding_weight="true")
    state = read_weights((aux / NAME / "model.safetensors",), WHERE)
    assert torch.equal(t.model.embedding(0).weight, state["embeddings.word_embeddings.weight"])
    own = t.model.encoders[0].transformer.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in own.items())


def test_the_transformer_trains_at_its_own_learning_rate(aux):
    t = trainer(aux, enc_dim=8, learning_rate="0.003", transformer_learning_rate="0.0002")
    groups = t.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.003, 0.0002]
    slow = {id(p) for p in groups[1]["params"]}
    model = t.model
    expect = {id(p) for s in (0, 1) for p in [*model.encoders[s].transformer.parameters(),
                                              model.embedding(s).weight]}
    assert slow == expect
    fast = {id(p) for p in groups[0]["params"]}
    assert {id(p) for p in model.encoders[0].proj.parameters()} <= fast  # the new projection
    assert {id(p) for p in model.mlp.parameters()} <= fast and not fast & slow
    tied = trainer(aux, tied_token_embedding_weight="true")
    params = tied.optimizer.param_groups[1]["params"]
    assert len({id(p) for p in params}) == len(params)  # the shared encoder's parameters once


def test_frozen_layers_keep_the_embeddings_and_the_lowest_layers(aux):
    t = trainer(aux, enc0_frozen_layers=1, tied_token_embedding_weight="true")
    encoder = t.model.encoders[0]
    frozen = [t.model.embedding(0).weight, *encoder.transformer.embeddings.parameters(),
              *encoder.layers()[0].parameters()]
    assert not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in encoder.layers()[1].parameters())
    before = snapshot(t)
    t.model.train()
    t.train_step(first_batch(t))
    after = t.model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(after[key], value)
        if key == "embeddings.0.weight" or key.startswith(("encoders.0.transformer.embeddings.",
                                                             "encoders.0.transformer.encoder.layer.0.")):
            assert not changed, key
        elif key.startswith("encoders.0.transformer.encoder.layer.1.") and "LayerNorm" not in key:
            assert changed, key


def test_more_frozen_layers_than_the_model_has_is_a_user_error(aux):
    with pytest.raises(UserError, match=re.escape("enc0_frozen_layers=3: the model in tiny has 2 layers")):
        trainer(aux, enc0_frozen_layers=3)


@pytest.mark.parametrize("tied", ["true", "false"])
def test_gradient_accumulation_gives_the_update_of_the_whole_batch(still_aux, tied):
    """Without in-batch negatives and dropout, two micro-batches of half the batch each (their
    losses weighted by their share) give the gradient, and so the SGD step, of the whole batch."""
    over = {"optimizer": "sgd", "negative_sampling_rate": "1", "tied_token_embedding_weight": tied}
    whole, split = trainer(still_aux, **over), trainer(still_aux, gradient_accumulation_steps=2, **over)
    batch = first_batch(whole)
    assert len(batch) == 16 and [len(b) for b in batch.split(2)] == [8, 8]
    before = snapshot(whole)
    assert all(torch.equal(split.model.state_dict()[k], v) for k, v in before.items())
    whole.model.train()
    split.model.train()
    stats_whole, stats_split = whole.train_step(batch), split.train_step(batch)
    torch.testing.assert_close(stats_split["cross_entropy"], stats_whole["cross_entropy"],
                               rtol=1e-5, atol=1e-6)
    moved = 0
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(split.model.state_dict()[key], value, rtol=1e-5, atol=1e-7, msg=key)
        moved += not torch.equal(value, before[key])
    assert moved > 10


@pytest.mark.parametrize("aux_name", ["aux", "still_aux"])
def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_weights(request, tmp_path, aux_name):
    """Stopped mid-epoch (checkpoint: the transformer's weights, both learning-rate groups' state,
    the RNG of its dropout), then resumed: the weights of the run that was not stopped."""
    aux_dir = request.getfixturevalue(aux_name)
    hp, folders = resolve_transformers(thp(epochs=2, mini_batch_size=16, enc_dim=8, enc0_frozen_layers=1,
                                           transformer_learning_rate="0.01"), aux_dir)

    def run(checkpoints, stop=lambda: False) -> Trainer:
        torch.manual_seed(0)
        return Trainer(hp, {"train": word_pairs()}, QUIET, pretrained=folders, checkpoint_dir=checkpoints,
                       data_digest={"train": ["a" * 64]}, stop_requested=stop)

    whole = run(None)
    whole.train()
    steps = iter(range(100))
    with pytest.raises(TrainingInterrupted, match="epoch 1 after batch 2"):
        run(tmp_path, lambda: next(steps) == 4).train()  # 3 batches per epoch
    resumed = run(tmp_path)
    assert resumed.resume() and (resumed.start_epoch, resumed.start_batch) == (1, 2)
    resumed.train()
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_mixed_precision_applies_on_cuda_only(aux, device, caplog):
    """auto: bf16 on a GPU that has it, full precision on the CPU; bf16 and fp16 asked for on the
    CPU: a warning and full precision; fp16 scales the loss. Every mode takes a finite step (that
    moves the weights, but for fp16, whose first steps may be skipped) and keeps them in float32."""
    cuda = torch.device(device).type == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    expect = {"auto": torch.bfloat16 if bf16 else None, "off": None,
              "bf16": torch.bfloat16 if cuda else None, "fp16": torch.float16 if cuda else None}
    for mode, dtype in expect.items():
        if mode == "bf16" and cuda and not bf16:
            continue
        caplog.clear()
        t = trainer(aux, device=device, mixed_precision=mode, tied_token_embedding_weight="true")
        assert t.amp_dtype == dtype, mode
        assert t.scaler.is_enabled() == (dtype == torch.float16)
        warned = [r.getMessage() for r in caplog.records if "applies on CUDA devices only" in r.getMessage()]
        assert len(warned) == (not cuda and mode in ("bf16", "fp16")), (mode, warned)
        before = snapshot(t)
        t.model.train()
        stats = t.train_step(first_batch(t))
        assert torch.isfinite(stats["cross_entropy"]).item(), mode
        table = t.model.embedding(0).weight
        assert table.dtype == torch.float32 and torch.isfinite(table).all(), mode
        if dtype != torch.float16:  # fp16's first steps may be skipped while the loss scale settles
            assert not torch.equal(table, before["embeddings.0.weight"]), mode


def test_a_pooling_other_than_the_sentence_transformers_model_s_is_warned_about(tmp_path, caplog):
    aux = tmp_path  # a folder of its own: the module's is shared
    tiny_transformer(aux / NAME)
    (aux / NAME / "1_Pooling").mkdir()
    (aux / NAME / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with caplog.at_level("WARNING"):
        resolve_transformers(thp(), aux)
    assert "was trained with cls pooling (1_Pooling/config.json) but enc0_transformer_pooling=mean" \
        in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        resolve_transformers(thp(enc0_transformer_pooling="cls"), aux)
    assert "pooling" not in caplog.text
