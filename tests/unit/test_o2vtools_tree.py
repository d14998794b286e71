"""tools/o2vtools/tree.py: the SageMaker tree the benchmarks train on."""

import json

import pytest
from o2vtools import tree


def test_write_config_and_link_channel_file(tmp_path):
    base, source = tmp_path / "job", tmp_path / "train.jsonl"
    source.write_text('{"in0": [1], "in1": [2], "label": 1}\n')
    tree.write_config(base, {"epochs": "2"}, ["train"])
    tree.link_channel_file(base, "train", source)
    config = base / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {"epochs": "2"}
    assert list(json.loads((config / "inputdataconfig.json").read_text())) == ["train"]
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert (base / "input" / "data" / "train" / "train.jsonl").read_text() == source.read_text()
    assert (base / "model").is_dir() and (base / "output" / "data").is_dir()
    with pytest.raises(ValueError):
        tree.resource_config("algo-3", ["algo-1", "algo-2"])
