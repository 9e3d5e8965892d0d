"""DeepSpeed configs, parsed and resolved by the C++ engine's parser.

A config is a path, a dict, or JSON text. Unknown keys, values out of range
and settings the engine does not run raise ConfigError, whose `problems` are
(JSON path, message) pairs; warnings go to the "zerotrain" logger.
"""

import json
import logging
import os
from typing import Any, Dict, Union

from . import _C

logger = logging.getLogger("zerotrain")

ConfigError = _C.ConfigError

ConfigSource = Union[str, "os.PathLike[str]", Dict[str, Any]]


def load_config(config: ConfigSource, world_size: int = 1, **auto_values: Any) -> Dict[str, Any]:
    """Parses and resolves `config` for `world_size` data-parallel ranks.

    `auto_values` fill the config's "auto" entries, Hugging Face style, by
    their config names: train_micro_batch_size_per_gpu,
    gradient_accumulation_steps, lr, betas, eps, weight_decay,
    gradient_clipping, warmup_steps, total_steps, fp16, bf16, hidden_size.
    Returns the resolved document (every default filled in, the batch triple
    consistent). Raises ConfigError as initialize() would.
    """
    if isinstance(config, dict):
        text, source, is_path = json.dumps(config), "<json>", False
    elif isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        text = os.fspath(config)
        source, is_path = text, True
    elif isinstance(config, str):
        text, source, is_path = config, "<string>", False
    else:
        raise TypeError(f"zerotrain: a config is a path, a dict or JSON text, not {type(config).__name__}")
    resolved, warnings = _C.resolve_config(text, source, is_path, int(world_size), dict(auto_values))
    for path, message in warnings:
        logger.warning("%s: %s: %s", source, path, message)
    return json.loads(resolved)
