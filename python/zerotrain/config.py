"""DeepSpeed configs, parsed and resolved by the C++ engine's parser.

A config is a path, a dict, or JSON text. Unknown keys, values out of range
and settings the engine does not run raise ConfigError, whose `problems` are
(JSON path, message) pairs; warnings go to the "zerotrain" logger.
"""

import argparse
import json
import logging
import os
from typing import Any, Dict, Optional, Union

from . import _C

logger = logging.getLogger("zerotrain")

ConfigError = _C.ConfigError

ConfigSource = Union[str, "os.PathLike[str]", Dict[str, Any]]


def config_text(config: ConfigSource):
    """(text or path, source name for messages, whether it is a path) of a config."""
    if isinstance(config, dict):
        return json.dumps(config), "<json>", False
    if isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        path = os.fspath(config)
        return path, path, True
    if isinstance(config, str):
        return config, "<string>", False
    raise TypeError(f"zerotrain: a config is a path, a dict or JSON text, not {type(config).__name__}")


def load_config(config: ConfigSource, world_size: int = 1, **auto_values: Any) -> Dict[str, Any]:
    """Parses and resolves `config` for `world_size` data-parallel ranks.

    `auto_values` fill the config's "auto" entries, Hugging Face style, by
    their config names: train_micro_batch_size_per_gpu,
    gradient_accumulation_steps, lr, betas, eps, weight_decay,
    gradient_clipping, warmup_steps, total_steps, fp16, bf16, hidden_size.
    Returns the resolved document (every default filled in, the batch triple
    consistent). Raises ConfigError as initialize() would.
    """
    text, source, is_path = config_text(config)
    resolved, warnings = _C.resolve_config(text, source, is_path, int(world_size), dict(auto_values))
    for path, message in warnings:
        logger.warning("%s: %s: %s", source, path, message)
    return json.loads(resolved)


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """DeepSpeed's add_config_arguments: --deepspeed (a switch with no effect,
    as in DeepSpeed), --deepspeed_config, and the deprecated --deepscale and
    --deepscale_config."""
    group = parser.add_argument_group("DeepSpeed", "DeepSpeed configurations")
    group.add_argument("--deepspeed", default=False, action="store_true",
                       help="accepted for DeepSpeed scripts; zerotrain needs no switch")
    group.add_argument("--deepspeed_config", default=None, type=str, help="the DeepSpeed JSON config file")
    group.add_argument("--deepscale", default=False, action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--deepscale_config", default=None, type=str, help=argparse.SUPPRESS)
    return parser


def config_source(args: Optional[argparse.Namespace] = None, config: Optional[ConfigSource] = None,
                  config_params: Optional[ConfigSource] = None) -> ConfigSource:
    """The config initialize() reads, by DeepSpeed's rule: `config`,
    `config_params` or `args.deepspeed_config` (`args.deepscale_config`,
    deprecated, as a fallback); exactly one of them."""
    from_args = None
    if args is not None:
        from_args = getattr(args, "deepspeed_config", None)
        deprecated = getattr(args, "deepscale_config", None)
        if from_args is None and deprecated is not None:
            logger.warning("--deepscale_config is deprecated; use --deepspeed_config")
            from_args = deprecated
    given = {name: value for name, value in
             (("config", config), ("config_params", config_params), ("args.deepspeed_config", from_args))
             if value is not None}
    if not given:
        raise ValueError("zerotrain.initialize: no config; pass config=, config_params= or "
                         "args with --deepspeed_config")
    if len(given) > 1:
        raise ValueError("zerotrain.initialize: the config is given more than once: " + ", ".join(given) +
                         "; pass exactly one")
    return next(iter(given.values()))
