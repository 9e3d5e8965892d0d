"""Process groups: DeepSpeed's `deepspeed.comm` over torch.distributed.

init_distributed() adopts the torch.distributed default group when the script
created one, and otherwise creates it from the launcher's variables (torchrun:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or as a group of one
process when none is set. The engine's collectives run on zerotrain's own
communicator over that group (adopted, not a second rendezvous), so
`torch.distributed.get_rank()` and `barrier()` keep working in the script.
"""

import datetime
import logging
import os
from typing import Optional

import torch
import torch.distributed as dist
from torch.distributed import (  # noqa: F401  -- DeepSpeed re-exports these
    ReduceOp, all_gather, all_gather_into_tensor, all_reduce, all_to_all_single, barrier, broadcast, gather,
    get_backend, get_rank, get_world_size, irecv, isend, is_available, is_initialized, new_group, recv,
    reduce, reduce_scatter, reduce_scatter_tensor, scatter, send)

from .accelerator import get_accelerator

logger = logging.getLogger("zerotrain")


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"zerotrain: the environment variable {name}={value!r} is not an integer") from None


def get_local_rank() -> int:
    """LOCAL_RANK (torchrun, the DeepSpeed launcher) or 0."""
    return _env_int("LOCAL_RANK") or 0


def init_distributed(dist_backend: Optional[str] = None, auto_mpi_discovery: bool = True,
                     distributed_port: int = 29500, verbose: bool = True,
                     timeout: datetime.timedelta = datetime.timedelta(minutes=30), init_method: Optional[str] = None,
                     dist_init_required: Optional[bool] = None, config=None, rank: int = -1,
                     world_size: int = -1) -> None:
    """DeepSpeed's init_distributed: torch.distributed's default group, created when there is none.

    With torchrun's variables (RANK and WORLD_SIZE) the group spans the job;
    without them, and without an explicit rank and world size, it is one
    process (an in-memory store, no port). `auto_mpi_discovery` is accepted;
    an MPI launch is read from OMPI_COMM_WORLD_* by the C++ launcher only.
    """
    if dist.is_initialized():
        if dist_init_required:
            logger.warning("zerotrain.init_distributed: torch.distributed is already initialized; adopting it")
        return
    if dist_init_required is False:
        raise RuntimeError("zerotrain.init_distributed: dist_init_required=False, but torch.distributed is not "
                           "initialized")
    backend = dist_backend or get_accelerator().communication_backend_name()
    if backend == "nccl":
        # Gloo as well, for the CPU tensors a GPU job still reduces (counters, checksums).
        backend = "cpu:gloo,cuda:nccl"
        torch.cuda.set_device(get_local_rank())
    env_rank, env_world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank < 0 and env_rank is not None:
        rank = env_rank
    if world_size < 0 and env_world is not None:
        world_size = env_world
    if rank < 0 and world_size < 0:
        # One process and no launcher: an in-memory store.
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    else:
        if rank < 0 or world_size < 0:
            raise ValueError(f"zerotrain.init_distributed: rank {rank} and world size {world_size}: give both "
                             "(or set RANK and WORLD_SIZE, as torchrun does)")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(distributed_port))
        dist.init_process_group(backend=backend, init_method=init_method or "env://", rank=rank,
                                world_size=world_size, timeout=timeout)
    if verbose and dist.get_rank() == 0:
        logger.info("zerotrain: torch.distributed initialized: %d rank(s), backend %s", dist.get_world_size(),
                    backend)
