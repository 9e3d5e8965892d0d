"""zerotrain.initialize and the engine: DeepSpeed's API over the C++ engine.

The engine object is an nn.Module holding the user's module as `module`.
Forward is the module's forward; the ZeRO core sees it through the hooks
model.py puts on each unit's module. backward(), step() and the rest call the
C++ engine (python/csrc/engine_bindings.cpp), which does the loss scaling,
the 1/GAS, reductions, clipping, the fused optimizer step and checkpoints
exactly as for a C++ training loop.
"""

import json
import logging
import os
import weakref
from contextlib import contextmanager
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from . import _C, checkpointing
from .accelerator import get_accelerator
from .comm import get_local_rank, init_distributed
from .config import config_source, config_text
from .model import UnitHooks, describe

logger = logging.getLogger("zerotrain")


# ---- the client optimizer --------------------------------------------------

_OPTIMIZER_TYPES = {torch.optim.AdamW: "AdamW", torch.optim.Adam: "Adam"}


def _optimizer_section(optimizer: torch.optim.Optimizer) -> Tuple[dict, list]:
    """The config's optimizer section for a torch AdamW or Adam, and its
    parameter groups (tensors, lr, weight_decay). Anything the fused
    optimizer would compute differently is an error, never a silent change."""
    kind = _OPTIMIZER_TYPES.get(type(optimizer))
    if kind is None:
        raise ValueError(f"zerotrain.initialize: the client optimizer {type(optimizer).__name__} cannot run on "
                         "zerotrain's fused optimizers; pass torch.optim.AdamW or Adam, or name the optimizer "
                         "(Adam, AdamW or Lamb) in the config's optimizer section and pass no optimizer")
    groups = optimizer.param_groups
    first = groups[0]
    for flag in ("amsgrad", "maximize", "differentiable"):
        for g in groups:
            if g.get(flag, False):
                raise ValueError(f"zerotrain.initialize: the client optimizer sets {flag}=True, which "
                                 "zerotrain's fused optimizers do not compute")
    def value(g, key):
        return tuple(float(b) for b in g[key]) if key == "betas" else float(g[key])

    for g in groups[1:]:
        for key in ("betas", "eps"):
            if value(g, key) != value(first, key):
                raise ValueError(f"zerotrain.initialize: the client optimizer's parameter groups differ in "
                                 f"{key}; zerotrain groups may differ in lr and weight_decay only")
    params = {"lr": float(first["lr"]), "betas": [float(b) for b in first["betas"]], "eps": float(first["eps"]),
              "weight_decay": float(first["weight_decay"])}
    if kind == "Adam":
        params["adam_w_mode"] = False  # torch's Adam adds weight decay to the gradient (L2)
    section = {"type": kind, "params": params}
    out = [(list(g["params"]), float(g["lr"]), float(g["weight_decay"])) for g in groups]
    return section, out


def _raw_config(source) -> dict:
    """The config as a dict before resolution, to add the client optimizer to."""
    if isinstance(source, dict):
        return dict(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return json.loads(source)
    with open(os.fspath(source)) as f:
        return json.load(f)


# ---- parameter groups --------------------------------------------------------

def _param_groups(model: nn.Module, model_parameters: Optional[Iterable]) -> list:
    """(tensors, lr, weight_decay) per group from `model_parameters`: tensors
    (one group) or param-group dicts. Every trainable parameter must be in
    one: zerotrain trains what requires grad."""
    if model_parameters is None:
        return []
    items = list(model_parameters)
    if not items:
        raise ValueError("zerotrain.initialize: model_parameters is empty")
    if all(isinstance(g, dict) for g in items):
        groups = []
        for i, g in enumerate(items):
            unknown = set(g) - {"params", "lr", "weight_decay", "name"}
            if unknown:
                raise ValueError(f"zerotrain.initialize: model_parameters group {i} sets {sorted(unknown)}; a "
                                 "group may set lr and weight_decay (the rest comes from the config)")
            ps = g["params"]
            ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
            groups.append((ps, g.get("lr"), g.get("weight_decay")))
    elif all(isinstance(p, torch.Tensor) for p in items):
        groups = [(items, None, None)]
    else:
        raise TypeError("zerotrain.initialize: model_parameters holds tensors or param-group dicts, not both")
    given = {id(p) for ps, _, _ in groups for p in ps}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in given]
    if missing:
        raise ValueError(f"zerotrain.initialize: parameters {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                         "require grad but are not in model_parameters; pass them, or freeze them "
                         "(requires_grad_(False))")
    return groups


# ---- views DeepSpeed scripts read ------------------------------------------

class EngineOptimizer:
    """What initialize() returns as the optimizer: the engine steps it; this
    shows its parameter groups and learning rates."""

    def __init__(self, engine: "ZerotrainEngine", groups: List[List[torch.Tensor]]):
        self._engine = weakref.proxy(engine)
        self._groups = groups

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        return [{"params": ps, "lr": lr} for ps, lr in zip(self._groups, self._engine.get_lr())]

    @property
    def loss_scale(self) -> float:
        return self._engine.loss_scale()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._engine.zero_grad()

    def step(self, *args, **kwargs):
        raise RuntimeError("zerotrain: the optimizer is stepped by engine.step(), after every micro-batch")

    def state_dict(self):
        raise RuntimeError("zerotrain: the optimizer state is saved by engine.save_checkpoint()")


class EngineLrScheduler:
    """The config's scheduler, stepped by engine.step() at each boundary."""

    def __init__(self, engine: "ZerotrainEngine"):
        self._engine = weakref.proxy(engine)

    def get_last_lr(self) -> List[float]:
        return self._engine.get_lr()

    get_lr = get_last_lr

    @property
    def last_batch_iteration(self) -> int:
        return self._engine.global_steps - 1

    def step(self, *args, **kwargs):
        raise RuntimeError("zerotrain: the config's scheduler is stepped by engine.step(); do not step it again")


# ---- the engine --------------------------------------------------------------

class ZerotrainEngine(nn.Module):
    """DeepSpeed's engine over zerotrain's C++ core. Create it with initialize()."""

    def __init__(self, *, args, model: nn.Module, optimizer, model_parameters, training_data, lr_scheduler,
                 collate_fn, config, config_params, dist_init_required, distributed_port: int, observer=None):
        super().__init__()
        source = config_source(args, config, config_params)
        if lr_scheduler is not None:
            raise ValueError("zerotrain.initialize: a client lr_scheduler is not supported; name the schedule in "
                             "the config's scheduler section (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, "
                             "LRRangeTest), which engine.step() steps")
        init_distributed(dist_init_required=dist_init_required, distributed_port=distributed_port)
        world, rank = dist.get_world_size(), dist.get_rank()

        client_groups = None
        if optimizer is not None:
            raw = _raw_config(source)
            if "optimizer" in raw:
                raise ValueError("zerotrain.initialize: an optimizer is both passed and named in the config's "
                                 "optimizer section; keep one")
            raw["optimizer"], client_groups = _optimizer_section(optimizer)
            source = raw
        text, source_name, is_path = config_text(source)
        # Resolved here without logging: the engine logs the warnings once, on rank 0.
        self._config = json.loads(_C.resolve_config(text, source_name, is_path, world, {})[0])
        groups = client_groups if client_groups is not None else _param_groups(model, model_parameters)

        local_rank = getattr(args, "local_rank", -1) if args is not None else -1
        self.local_rank = local_rank if local_rank is not None and local_rank >= 0 else get_local_rank()
        accelerator = get_accelerator()
        self.device = accelerator.device(self.local_rank if accelerator.device_name() == "cuda" else None)
        model.to(self.device)
        if self.bfloat16_enabled():
            model.to(torch.bfloat16)
        elif self.fp16_enabled():
            model.to(torch.float16)
        self.module = model

        group = dist.distributed_c10d._get_default_group()
        store = dist.distributed_c10d._get_default_store()
        comm = _C.Communicator.adopt(group, store, text, source_name, is_path)
        modules, by_path = describe(model)
        self._core = _C.initialize(
            modules=modules, train=lambda on: model.train(on),
            buffers=lambda: [(n, b) for n, b in model.named_buffers()],
            config_text=text, source=source_name, is_path=is_path, communicator=comm, param_groups=groups,
            wrap_kind="default", wrap_types=[], wrap_numel=0, observer=observer, warn=logger.warning,
            report=logger.info)
        self._units = self._core.units()
        self._hooks = UnitHooks(self._core, self._units, by_path)
        names = {n for u in self._units for n in u["params"]}
        for name, p in model.named_parameters():
            if name in names:
                p._zerotrain_engine = weakref.ref(self)
                p._zerotrain_name = name
        checkpointing.configure(deepspeed_config=self._config)

        self.global_rank = rank
        self.world_size = self.dp_world_size = world
        self.optimizer = EngineOptimizer(self, [ps for ps, _, _ in groups] if groups else
                                         [[p for p in model.parameters() if p.requires_grad]])
        self.lr_scheduler = EngineLrScheduler(self) if "scheduler" in self._config else None
        self.training_dataloader = None
        if training_data is not None:
            self.training_dataloader = self.deepspeed_io(training_data, collate_fn=collate_fn)
        if rank == 0:
            logger.info("zerotrain: engine ready: ZeRO stage %d, %d unit(s), %d rank(s), %s",
                        self.zero_optimization_stage(), len(self._units), world, self.device)

    # -- attribute fallthrough, as DeepSpeed's engine --
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            module = self.__dict__.get("_modules", {}).get("module")
            if module is not None and name != "module":
                return getattr(module, name)
            raise

    # -- training --
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False, scale_wrt_gas: bool = True):
        """Scales the loss (loss scale and 1/GAS) and runs backward; the
        reductions run as units finish. Returns the loss divided by GAS."""
        if retain_graph or not scale_wrt_gas:
            raise ValueError("zerotrain: backward(retain_graph=True) and backward(scale_wrt_gas=False) are not "
                             "supported")
        return self._core.backward(loss)

    def step(self, lr_kwargs=None) -> None:
        """After every micro-batch; updates at the accumulation boundary only."""
        if lr_kwargs is not None:
            raise ValueError("zerotrain: step(lr_kwargs=...) is not supported; the config's scheduler sets the lr")
        self._core.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._core.zero_grad()

    def is_gradient_accumulation_boundary(self) -> bool:
        return self._core.is_gradient_accumulation_boundary()

    @contextmanager
    def no_sync(self):
        scope = self._core.no_sync()
        try:
            yield
        finally:
            scope.close()

    def train(self, mode: bool = True):
        super().train(mode)
        if "_core" in self.__dict__:
            self._core.train(mode)
        return self

    def deepspeed_io(self, dataset, batch_size: Optional[int] = None, route=None, pin_memory: bool = True,
                     data_sampler=None, collate_fn=None, num_local_io_workers: Optional[int] = None):
        """A DataLoader over this rank's share of `dataset` (a DistributedSampler
        over the data-parallel ranks), micro-batches of
        train_micro_batch_size_per_gpu."""
        sampler = data_sampler or torch.utils.data.distributed.DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.global_rank)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size or self.train_micro_batch_size_per_gpu(), sampler=sampler,
            collate_fn=collate_fn, pin_memory=pin_memory and self.device.type == "cuda",
            num_workers=num_local_io_workers or 0)

    # -- checkpoints --
    def save_checkpoint(self, save_dir: str, tag: Optional[str] = None, client_state: Optional[dict] = None,
                        save_latest: bool = True, exclude_frozen_parameters: bool = False) -> bool:
        """Collective. Writes save_dir/<tag> (default global_step<N>) atomically
        and points save_dir/latest at it; loadable at any world size and stage.
        client_state must be JSON-serializable (it is kept in the manifest)."""
        if exclude_frozen_parameters:
            raise ValueError("zerotrain: save_checkpoint(exclude_frozen_parameters=True) is not supported")
        try:
            text = json.dumps(client_state if client_state is not None else {})
        except TypeError as e:
            raise TypeError(f"zerotrain.save_checkpoint: client_state must be JSON-serializable ({e})") from None
        self._core.save_checkpoint(os.fspath(save_dir), tag or "", text, save_latest)
        return True

    def load_checkpoint(self, load_dir: str, tag: Optional[str] = None, load_module_strict: bool = True,
                        load_optimizer_states: bool = True, load_lr_scheduler_states: bool = True,
                        load_module_only: bool = False, custom_load_fn=None):
        """Collective. Returns (path, client_state), or (None, None) when no tag
        is given and load_dir/latest does not exist. Every file is verified
        before anything changes."""
        if custom_load_fn is not None:
            raise ValueError("zerotrain: load_checkpoint(custom_load_fn=...) is not supported")
        loaded = self._core.load_checkpoint(os.fspath(load_dir), tag or "", load_module_strict,
                                            load_optimizer_states, load_lr_scheduler_states, load_module_only)
        if loaded is None:
            return None, None
        path, client_state = loaded
        return path, json.loads(client_state)

    def save_16bit_model(self, save_dir: str, save_filename: str = "pytorch_model.bin",
                         exclude_frozen_parameters: bool = False) -> bool:
        if exclude_frozen_parameters:
            raise ValueError("zerotrain: save_16bit_model(exclude_frozen_parameters=True) is not supported")
        self._core.save_16bit_model(os.fspath(save_dir), save_filename)
        return True

    def _gathered(self, names: List[str], modifier_rank: Optional[int]):
        """The C++ scope behind zero.GatheredParameters (close() ends it)."""
        return self._core.gathered_parameters(names, modifier_rank)

    def module_state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False,
                          exclude_frozen_parameters: bool = False) -> Dict[str, torch.Tensor]:
        """The module's state dict with full parameters (gathered at stage 3; collective there)."""
        scope = self._core.gathered_parameters([], None)
        try:
            return {k: v.detach().clone() for k, v in
                    self.module.state_dict(prefix=prefix, keep_vars=keep_vars).items()}
        finally:
            scope.close()

    # -- the values DeepSpeed's getters return --
    def train_batch_size(self) -> int:
        return self._config["train_batch_size"]

    def train_micro_batch_size_per_gpu(self) -> int:
        return self._config["train_micro_batch_size_per_gpu"]

    def gradient_accumulation_steps(self) -> int:
        return self._config["gradient_accumulation_steps"]

    def zero_optimization_stage(self) -> int:
        return self._config["zero_optimization"]["stage"]

    def zero_optimization(self) -> bool:
        return self.zero_optimization_stage() > 0

    def fp16_enabled(self) -> bool:
        return bool(self._config.get("fp16", {}).get("enabled", False))

    def bfloat16_enabled(self) -> bool:
        return bool(self._config.get("bf16", {}).get("enabled", False))

    def gradient_clipping(self) -> float:
        return self._config.get("gradient_clipping", 0.0)

    def loss_scale(self) -> float:
        return self._core.loss_scale()

    def get_lr(self) -> List[float]:
        return list(self._core.lr())

    def get_global_grad_norm(self) -> Optional[float]:
        return self._core.global_grad_norm()

    def was_step_applied(self) -> bool:
        return self._core.was_step_applied()

    @property
    def global_steps(self) -> int:
        return self._core.global_steps

    @property
    def global_samples(self) -> int:
        return self._core.global_steps * self.train_batch_size()

    @property
    def micro_steps(self) -> int:
        return self._core.micro_steps

    @property
    def skipped_steps(self) -> int:
        return self._core.skipped_steps

    @property
    def config(self) -> dict:
        """The resolved config (every default filled in)."""
        return self._config

    # -- what the C++ engine reports --
    def memory_report(self) -> Dict[str, int]:
        """This rank's bytes by role (parameters, gradients, master weights, ...)."""
        return self._core.memory_report()

    def comm_report(self) -> Dict[str, Dict[str, int]]:
        """Collectives of the last optimizer step: calls and bytes per collective."""
        return self._core.comm_report()

    def timers(self) -> Dict[str, Dict[str, float]]:
        """Cumulative milliseconds and counts per phase (backward, reduce, step, all-gather)."""
        return self._core.timers()

    def units(self) -> List[dict]:
        """The units the engine cut the model into: name, module path, parameters, elements."""
        return list(self._units)

    def full_fp32_param(self, name: str) -> torch.Tensor:
        return self._core.full_fp32_param(name)

    def destroy(self) -> None:
        """Takes the engine's hooks off the module."""
        self._hooks.remove()


def initialize(args=None, model: Optional[nn.Module] = None, optimizer=None, model_parameters=None,
               training_data=None, lr_scheduler=None, distributed_port: int = 29500, mpu=None,
               dist_init_required: Optional[bool] = None, collate_fn=None, config=None, mesh_param=None,
               config_params=None):
    """DeepSpeed's initialize: returns (engine, optimizer, training_dataloader, lr_scheduler).

    The config comes from exactly one of `config`, `config_params` and
    `args.deepspeed_config`. `optimizer` may be a torch.optim.AdamW or Adam
    (mapped onto the fused optimizer with its settings); `model_parameters`
    tensors or param-group dicts with their own lr and weight_decay.
    """
    if model is None:
        raise ValueError("zerotrain.initialize: model is required")
    if mpu is not None or mesh_param is not None:
        raise ValueError("zerotrain.initialize: model parallelism (mpu, mesh_param) is not supported")
    engine = ZerotrainEngine(args=args, model=model, optimizer=optimizer, model_parameters=model_parameters,
                             training_data=training_data, lr_scheduler=lr_scheduler, collate_fn=collate_fn,
                             config=config, config_params=config_params, dist_init_required=dist_init_required,
                             distributed_port=distributed_port)
    return engine, engine.optimizer, engine.training_dataloader, engine.lr_scheduler
