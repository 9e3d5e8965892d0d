"""zerotrain: DeepSpeed's ZeRO for PyTorch scripts, on zerotrain's C++ engine.

This first part of the package resolves and checks DeepSpeed configs exactly
as the C++ engine's initialize() does, and estimates per-rank memory. The
engine API (initialize, the engine object, checkpoints) comes next; see the
project's docs/python.md.
"""

import torch  # noqa: F401  -- loads LibTorch and torch_python before the extension

from . import _C
from .config import ConfigError, add_config_arguments, config_source, load_config
from .estimate import estimate_model_states

__version__ = "0.1.0"

__all__ = ["ConfigError", "add_config_arguments", "config_source", "load_config", "estimate_model_states",
           "__version__"]
