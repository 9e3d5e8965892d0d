"""Per-rank memory of model states, as `zerotrain estimate` prints it."""

from typing import Dict

from . import _C


def estimate_model_states(
    parameters: int,
    world_size: int = 1,
    stage: int = 0,
    dtype: str = "bf16",
    offload_optimizer: bool = False,
    offload_param: bool = False,
) -> Dict[str, int]:
    """Bytes per rank of parameters, gradients and optimizer states at a ZeRO
    stage (include/zerotrain/estimate.h has the formulas). Raises ValueError
    for impossible combinations (offload at stage 0, offload_param below 3)."""
    return _C.estimate_model_states(parameters, world_size, stage, dtype, offload_optimizer, offload_param)
