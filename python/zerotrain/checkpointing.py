"""Activation checkpointing: DeepSpeed's `deepspeed.checkpointing`.

checkpoint(function, *args) runs the C++ engine's checkpoint Function
(src/activation/checkpoint.cpp): the forward keeps only the inputs, the
backward recomputes `function` with the CPU and CUDA random number generators
as they were, and ZeRO stage 3 units inside it are gathered again for the
recompute. Reentrant, as DeepSpeed's. configure() takes the options DeepSpeed's
does; initialize() calls it with the config's activation_checkpointing section.
"""

from typing import Any, Optional

import torch

from . import _C

_options = {"cpu_checkpointing": False, "synchronize": False}
_configured = False


def configure(mpu_: Any = None, deepspeed_config: Any = None, partition_activations: Optional[bool] = None,
              contiguous_checkpointing: Optional[bool] = None, num_checkpoints: Optional[int] = None,
              checkpoint_in_cpu: Optional[bool] = None, synchronize: Optional[bool] = None,
              profile: Optional[bool] = None) -> None:
    """Sets the options of later checkpoint() calls, from a config (a path, a
    dict, or a resolved config) and/or the keyword arguments. The options
    zerotrain does not run (partitioning and contiguous buffers: no model
    parallelism here; profiling from Python) are errors when set."""
    global _configured
    section = {}
    if deepspeed_config is not None:
        from .config import load_config
        cfg = deepspeed_config if isinstance(deepspeed_config, dict) and "activation_checkpointing" in \
            deepspeed_config and "zero_optimization" in deepspeed_config else load_config(deepspeed_config)
        section = cfg.get("activation_checkpointing", {})
    if mpu_ is not None:
        raise ValueError("zerotrain.checkpointing.configure: mpu_ (model parallelism) is not supported")
    for name, value in (("partition_activations", partition_activations),
                        ("contiguous_memory_optimization", contiguous_checkpointing),
                        ("number_checkpoints", num_checkpoints), ("profile", profile)):
        if value:
            raise ValueError(f"zerotrain.checkpointing.configure: {name} is not supported from Python")
    cpu = section.get("cpu_checkpointing", False) if checkpoint_in_cpu is None else checkpoint_in_cpu
    sync = section.get("synchronize_checkpoint_boundary", False) if synchronize is None else synchronize
    _options.update(cpu_checkpointing=bool(cpu), synchronize=bool(sync))
    _configured = True


def is_configured() -> bool:
    return _configured


def reset() -> None:
    """Nothing to reset: no buffers are kept between checkpoints."""


def checkpoint(function, *args):
    """function(*args) with its activations recomputed in backward. Tensor
    arguments are the checkpoint's inputs; others are passed through as they
    are. Returns a tensor or a tuple of tensors, as `function` does."""
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    tensors = [args[i] for i in positions]
    single = []

    def run(inputs):
        full = list(args)
        for i, t in zip(positions, inputs):
            full[i] = t
        out = function(*full)
        if isinstance(out, torch.Tensor):
            single.append(True)
            return [out]
        if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
            single.append(False)
            return list(out)
        raise TypeError("zerotrain.checkpointing.checkpoint: the function must return a tensor or a tuple of "
                        f"tensors, not {type(out).__name__}")

    outputs = _C.checkpoint(run, tensors, _options["cpu_checkpointing"], _options["synchronize"])
    return outputs[0] if single[0] else tuple(outputs)


non_reentrant_checkpoint = checkpoint
