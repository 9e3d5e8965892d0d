"""`deepspeed.zero`: GatheredParameters, Init and the stage-3 helpers."""

import logging
from typing import Iterable, Optional, Union

import torch

from .model import set_z3_leaf_modules, unset_z3_leaf_modules  # noqa: F401

logger = logging.getLogger("zerotrain")


def _engine_of(p: torch.Tensor):
    ref = getattr(p, "_zerotrain_engine", None)
    engine = ref() if ref is not None else None
    return engine, getattr(p, "_zerotrain_name", None)


class GatheredParameters:
    """DeepSpeed's zero.GatheredParameters: the parameters hold their full
    values inside the scope, at any stage. With `modifier_rank`, what that
    rank writes into them is broadcast and becomes the parameters and the
    fp32 master weights on every rank; without it, changes are dropped at
    stage 3. Collective: every rank enters and leaves it. Parameters that no
    zerotrain engine trains are left alone, as DeepSpeed leaves parameters
    it does not partition."""

    def __init__(self, params: Union[torch.Tensor, Iterable[torch.Tensor]], modifier_rank: Optional[int] = None,
                 fwd_module=None, enabled: bool = True):
        if isinstance(params, torch.Tensor):
            params = [params]
        self._params = [p for p in params if p is not None]
        self._modifier_rank = modifier_rank
        self._enabled = enabled
        self._scope = None

    def __enter__(self):
        if not self._enabled:
            return self
        engines = {}
        for p in self._params:
            engine, name = _engine_of(p)
            if engine is not None:
                engines.setdefault(id(engine), (engine, []))[1].append(name)
        if len(engines) > 1:
            raise ValueError("zerotrain.zero.GatheredParameters: the parameters belong to more than one engine")
        if engines:
            engine, names = next(iter(engines.values()))
            self._scope = engine._gathered(names, self._modifier_rank)
        return self

    def __exit__(self, *exc):
        if self._scope is not None:
            scope, self._scope = self._scope, None
            scope.close()
        return False


class Init:
    """DeepSpeed's zero.Init. zerotrain builds the model's parameters whole
    inside it and shards them in initialize() (stage 3 then holds only the
    shards); the memory saving while the model is being built, which
    DeepSpeed gets by partitioning in each module's constructor, is not
    implemented, and entering the scope warns so in the log. Arguments that
    would change the model (dtype, remote_device, quantized weights) are
    rejected rather than ignored."""

    def __init__(self, module=None, data_parallel_group=None, mem_efficient_linear=True, remote_device=None,
                 pin_memory=False, config_dict_or_path=None, config=None, enabled=True, dtype=None, mpu=None,
                 **kwargs):
        for name, value in (("module", module), ("remote_device", remote_device), ("dtype", dtype), ("mpu", mpu)):
            if value is not None:
                raise ValueError(f"zerotrain.zero.Init: {name}= is not supported; build the model normally and "
                                 "let initialize() shard it")
        for name, value in kwargs.items():
            if value:
                raise ValueError(f"zerotrain.zero.Init: {name}= is not supported")
        self._enabled = enabled

    def __enter__(self):
        if self._enabled:
            logger.warning("zerotrain.zero.Init: parameters are built whole and sharded by initialize(); "
                           "building the model takes its full size in memory")
        return self

    def __exit__(self, *exc):
        return False
