"""DeepSpeed's accelerator interface, for the methods training scripts call.

get_accelerator() returns the CUDA accelerator when torch sees a GPU, else the
CPU one. DS_ACCELERATOR=cpu|cuda (DeepSpeed's variable) or ZEROTRAIN_ACCELERATOR
chooses explicitly; an accelerator that is not available is an error.
"""

import os
from typing import Optional

import torch


class Accelerator:
    """One device type: "cuda" (NCCL) or "cpu" (Gloo)."""

    def __init__(self, name: str):
        self._name = name

    # -- devices --
    def device_name(self, device_index: Optional[int] = None) -> str:
        if self._name == "cpu" or device_index is None:
            return self._name
        return f"cuda:{device_index}"

    def device(self, device_index: Optional[int] = None) -> torch.device:
        return torch.device(self.device_name(device_index))

    def current_device(self) -> int:
        return torch.cuda.current_device() if self._name == "cuda" else 0

    def current_device_name(self) -> str:
        return f"cuda:{torch.cuda.current_device()}" if self._name == "cuda" else "cpu"

    def set_device(self, device_index: int) -> None:
        if self._name == "cuda":
            torch.cuda.set_device(device_index)

    def device_count(self) -> int:
        return torch.cuda.device_count() if self._name == "cuda" else 1

    def is_available(self) -> bool:
        return torch.cuda.is_available() if self._name == "cuda" else True

    def synchronize(self, device_index: Optional[int] = None) -> None:
        if self._name == "cuda":
            torch.cuda.synchronize(device_index)

    # -- random numbers --
    def manual_seed(self, seed: int) -> None:
        if self._name == "cuda":
            torch.cuda.manual_seed(seed)
        else:
            torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        if self._name == "cuda":
            torch.cuda.manual_seed_all(seed)
        else:
            torch.manual_seed(seed)

    def initial_seed(self) -> int:
        return torch.cuda.initial_seed() if self._name == "cuda" else torch.initial_seed()

    # -- memory --
    def empty_cache(self) -> None:
        if self._name == "cuda":
            torch.cuda.empty_cache()

    def memory_allocated(self, device_index: Optional[int] = None) -> int:
        return torch.cuda.memory_allocated(device_index) if self._name == "cuda" else 0

    def max_memory_allocated(self, device_index: Optional[int] = None) -> int:
        return torch.cuda.max_memory_allocated(device_index) if self._name == "cuda" else 0

    # -- capabilities --
    def communication_backend_name(self) -> str:
        return "nccl" if self._name == "cuda" else "gloo"

    def is_bf16_supported(self) -> bool:
        return torch.cuda.is_bf16_supported() if self._name == "cuda" else True

    def is_fp16_supported(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"zerotrain.accelerator.Accelerator({self._name!r})"


def _choose() -> str:
    wanted = os.environ.get("ZEROTRAIN_ACCELERATOR") or os.environ.get("DS_ACCELERATOR")
    if wanted is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted not in ("cpu", "cuda"):
        raise ValueError(f"zerotrain: accelerator {wanted!r} (DS_ACCELERATOR/ZEROTRAIN_ACCELERATOR) is not one of "
                         "'cpu', 'cuda'")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("zerotrain: DS_ACCELERATOR/ZEROTRAIN_ACCELERATOR asks for cuda, and torch sees no GPU")
    return wanted


def get_accelerator() -> Accelerator:
    """The accelerator of this process, chosen from the environment on each call."""
    return Accelerator(_choose())
