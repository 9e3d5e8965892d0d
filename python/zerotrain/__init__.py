"""zerotrain: DeepSpeed's ZeRO for PyTorch scripts, on zerotrain's C++ engine.

    import zerotrain as deepspeed
    engine, optimizer, loader, scheduler = deepspeed.initialize(args=args, model=net,
                                                                model_parameters=net.parameters())

The API mirrors `deepspeed`'s (initialize, the engine's methods, comm,
accelerator, zero, checkpointing); docs/python.md lists what it runs and what
it rejects.
"""

import logging
import sys

import torch  # noqa: F401  -- loads LibTorch and torch_python before the extension

from . import _C
from . import accelerator, checkpointing, comm, zero
from .comm import init_distributed
from .config import ConfigError, add_config_arguments, config_source, load_config
from .engine import ZerotrainEngine, initialize
from .estimate import estimate_model_states
from .model import set_z3_leaf_modules, unset_z3_leaf_modules

CommError = _C.CommError


def _default_log_handler() -> None:
    """The "zerotrain" logger prints INFO and above on stdout, as DeepSpeed's
    logger does (the engine's report lines are INFO), unless the application
    gave it a handler of its own first; reconfigure it with
    logging.getLogger("zerotrain")."""
    log = logging.getLogger("zerotrain")
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


_default_log_handler()
DeepSpeedEngine = ZerotrainEngine
__version__ = "0.1.0"

__all__ = ["CommError", "ConfigError", "DeepSpeedEngine", "ZerotrainEngine", "accelerator", "add_config_arguments",
           "checkpointing", "comm", "config_source", "estimate_model_states", "init_distributed", "initialize",
           "load_config", "set_z3_leaf_modules", "unset_z3_leaf_modules", "zero", "__version__"]
