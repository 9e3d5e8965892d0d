"""The Python package resolves and rejects configs exactly as the C++ engine
does, with the JSON path of every problem on the exception.

What this catches: a C++ ConfigError arriving as a bare RuntimeError (or
aborting the interpreter) instead of zerotrain.ConfigError with its problems;
"auto" values not reaching the resolver (a wrong train_batch_size); settings
initialize() refuses accepted here; warnings dropped instead of logged.
"""

import json
import logging
from pathlib import Path

import pytest

import zerotrain

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_example_config_resolves_with_the_batch_triple_consistent():
    for path in sorted(CONFIGS.glob("*.json")):
        c = zerotrain.load_config(path, world_size=4, train_micro_batch_size_per_gpu=4, gradient_accumulation_steps=2,
                                  lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, gradient_clipping=1.0,
                                  warmup_steps=10, total_steps=100, fp16=False, bf16=False, hidden_size=64)
        b = c["train_batch_size"]
        assert b == c["train_micro_batch_size_per_gpu"] * c["gradient_accumulation_steps"] * 4, path.name


def test_a_path_a_dict_and_text_give_the_same_document():
    path = CONFIGS / "zero3_bf16.json"
    from_path = zerotrain.load_config(path, world_size=2)
    doc = json.loads(path.read_text())
    assert zerotrain.load_config(doc, world_size=2) == from_path
    assert zerotrain.load_config(json.dumps(doc), world_size=2) == from_path
    assert from_path["train_batch_size"] == 16  # 8 per rank x 1 step x 2 ranks
    assert from_path["zero_optimization"]["stage"] == 3


def test_auto_values_resolve_from_what_the_script_passes():
    doc = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
        "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"},
    }
    c = zerotrain.load_config(doc, world_size=2, train_micro_batch_size_per_gpu=3, gradient_accumulation_steps=5,
                              lr=2e-4, weight_decay=0.05, hidden_size=100)
    assert c["train_batch_size"] == 30
    assert c["optimizer"]["params"]["lr"] == pytest.approx(2e-4)
    assert c["optimizer"]["params"]["weight_decay"] == pytest.approx(0.05)
    assert c["zero_optimization"]["reduce_bucket_size"] == 100 * 100


def test_a_typo_raises_config_error_with_the_path_and_a_suggestion():
    with pytest.raises(zerotrain.ConfigError) as info:
        zerotrain.load_config({"train_batch_size": 8, "zero_optimisation": {"stage": 2}})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.source == "<json>"
    paths = [p for p, _ in err.problems]
    assert "zero_optimisation" in paths
    message = dict(err.problems)["zero_optimisation"]
    assert "zero_optimization" in message
    assert "zero_optimisation" in str(err)


def test_every_problem_is_reported_not_just_the_first():
    with pytest.raises(zerotrain.ConfigError) as info:
        zerotrain.load_config({"train_batch_size": 8, "optimizer": {"type": "AdamW", "params": {"lr": -1}},
                               "zero_optimization": {"stage": 7}})
    paths = [p for p, _ in info.value.problems]
    assert "optimizer.params.lr" in paths and "zero_optimization.stage" in paths


def test_settings_initialize_refuses_are_refused_here():
    doc = {"train_batch_size": 8, "optimizer": {"type": "AdamW"},
           "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"}}}
    with pytest.raises(zerotrain.ConfigError) as info:
        zerotrain.load_config(doc)
    assert [p for p, _ in info.value.problems] == ["zero_optimization.offload_optimizer.device"]


def test_a_missing_file_names_it():
    with pytest.raises(zerotrain.ConfigError) as info:
        zerotrain.load_config("/nonexistent/ds_config.json")
    assert "/nonexistent/ds_config.json" in str(info.value)


def test_warnings_go_to_the_zerotrain_logger(caplog):
    doc = {"train_batch_size": 8, "optimizer": {"type": "AdamW"},
           "zero_optimization": {"stage": 1, "sub_group_size": 1000}}
    with caplog.at_level(logging.WARNING, logger="zerotrain"):
        zerotrain.load_config(doc)
    assert any("zero_optimization.sub_group_size" in r.getMessage() for r in caplog.records)


def test_an_unknown_auto_value_is_an_error():
    with pytest.raises(KeyError):
        zerotrain.load_config(CONFIGS / "zero0_fp32.json", learning_rate=1e-3)
