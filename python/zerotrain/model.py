"""From an nn.Module to the C++ engine's model description, and the module
hooks that call the ZeRO core's triggers.

The core (src/zero/) knows units, not modules: a unit is a module subtree
whose parameters move as one (docs/architecture.md, "Units"). The C++ engine
cuts the tree this module describes with the same wrap policies as a LibTorch
module's; every unit, the root unit included, then gets three hooks on its
module: a forward pre-hook (before_forward) and a forward hook (after_forward,
and a tensor hook on each output that fires before_backward when autograd
reaches it, except in a checkpoint's recompute). The fourth trigger, after backward, the core fires itself from
its gradient hooks. These are the hooks zerotrain::Unit runs in C++.
"""

import weakref
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

_LEAF_ATTR = "_zerotrain_z3_leaf"


def set_z3_leaf_modules(model: nn.Module, leaf_module_classes: List[type]) -> List[nn.Module]:
    """DeepSpeed's set_z3_leaf_modules: every module of these classes becomes
    one unit (its subtree gathered and reduced as one) under any policy.
    Returns the modules marked."""
    classes = tuple(leaf_module_classes)
    if not classes:
        raise ValueError("zerotrain.set_z3_leaf_modules: no module classes given")
    marked = [m for m in model.modules() if isinstance(m, classes)]
    if not marked:
        names = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f"zerotrain.set_z3_leaf_modules: no module of the model is a "
                         f"{', '.join(c.__name__ for c in classes)}; its module types are: {', '.join(names)}")
    for m in marked:
        setattr(m, _LEAF_ATTR, True)
    return marked


def unset_z3_leaf_modules(model: nn.Module, leaf_module_classes: List[type]) -> List[nn.Module]:
    classes = tuple(leaf_module_classes)
    out = [m for m in model.modules() if isinstance(m, classes) and getattr(m, _LEAF_ATTR, False)]
    for m in out:
        delattr(m, _LEAF_ATTR)
    return out


def type_names(m: nn.Module) -> List[str]:
    cls = type(m)
    return [f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__, cls.__name__]


def describe(model: nn.Module) -> Tuple[list, Dict[str, nn.Module]]:
    """The module tree in pre-order: (path, type names, parent index, [(name,
    parameter)], marked) per module, each module once (as named_modules()),
    and the modules by path."""
    entries: list = []
    by_path: Dict[str, nn.Module] = {}
    seen = set()

    def visit(m: nn.Module, path: str, parent: int) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        index = len(entries)
        params = [(name, p) for name, p in m._parameters.items() if p is not None]
        entries.append((path, type_names(m), parent, params, bool(getattr(m, _LEAF_ATTR, False))))
        by_path[path] = m
        for name, child in m._modules.items():
            if child is not None:
                visit(child, f"{path}.{name}" if path else name, index)

    visit(model, "", -1)
    return entries, by_path


def _tensors(value: Any) -> List[torch.Tensor]:
    """The tensors in a forward's output: a tensor, or tuples, lists and dicts of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if hasattr(value, "to_tuple"):  # Hugging Face ModelOutput
        return _tensors(value.to_tuple())
    return []


class UnitHooks:
    """The hooks of one engine on its units' modules; remove() takes them off."""

    def __init__(self, core, units: List[dict], modules: Dict[str, nn.Module]):
        # A weak reference: the hooks live on the user's modules and must not
        # keep a finished engine alive.
        core_ref = weakref.ref(core)
        self._handles = []
        for index, unit in enumerate(units):
            module = modules.get(unit["module_path"])
            if module is None:
                raise RuntimeError(f"zerotrain: unit {unit['name']} names module '{unit['module_path']}', which "
                                   "the model does not have")
            self._handles.append(module.register_forward_pre_hook(self._before(core_ref, index)))
            self._handles.append(module.register_forward_hook(self._after(core_ref, index)))

    @staticmethod
    def _before(core_ref, unit: int):
        def hook(module, inputs):
            core = core_ref()
            if core is not None:
                core.before_forward(unit)
        return hook

    @staticmethod
    def _after(core_ref, unit: int):
        def hook(module, inputs, output):
            core = core_ref()
            if core is None:
                return
            # after_forward, and before_backward hooks on the outputs outside a recompute.
            core.leave_unit(unit, [t for t in _tensors(output) if t.requires_grad])
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

