"""DeepSpeed's command-line arguments and its rule for where the config comes
from, as scripts written for DeepSpeed use them.

What this catches: a script's `--deepspeed --deepspeed_config ds.json` line
rejected by argparse; the launcher's `--local_rank=N` clashing with ours; a
config given twice silently taking one of them; the deprecated spelling
ignored.
"""

import argparse

import pytest

import zerotrain


def parser():
    p = argparse.ArgumentParser()
    p.add_argument("--local_rank", type=int, default=-1)  # as DeepSpeed's examples declare it
    return zerotrain.add_config_arguments(p)


def test_a_deepspeed_command_line_parses():
    args = parser().parse_args(["--deepspeed", "--deepspeed_config", "ds.json", "--local_rank=1"])
    assert args.deepspeed and args.deepspeed_config == "ds.json" and args.local_rank == 1
    assert zerotrain.config_source(args=args) == "ds.json"


def test_the_deprecated_spelling_is_read_when_alone():
    args = parser().parse_args(["--deepscale_config", "old.json"])
    assert zerotrain.config_source(args=args) == "old.json"


def test_exactly_one_config():
    args = parser().parse_args(["--deepspeed_config", "ds.json"])
    with pytest.raises(ValueError, match="more than once"):
        zerotrain.config_source(args=args, config={"train_batch_size": 8})
    with pytest.raises(ValueError, match="no config"):
        zerotrain.config_source(args=parser().parse_args([]))
    assert zerotrain.config_source(config_params={"train_batch_size": 8}) == {"train_batch_size": 8}
