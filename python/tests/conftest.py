"""Helpers for the tests: multi-rank runs through torchrun on loopback, and
the paths of the C++ programs when the tests run from the project's build
(ctest sets ZEROTRAIN_CLI and ZEROTRAIN_TRAIN_MNIST)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the clone, when the tests run from it
CONFIGS = ROOT / "configs"


def torchrun(script, *args, nproc=2, timeout=300, env=None):
    """Runs `script` on `nproc` local ranks (torchrun --standalone: a free
    port); returns the CompletedProcess with stdout and stderr together."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(script), *map(str, args)]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    full_env.update(env or {})
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env=full_env)


def program(variable):
    """A C++ program of the build, from the environment, or skip."""
    path = os.environ.get(variable)
    if not path or not os.path.exists(path):
        pytest.skip(f"{variable} is not set to a built program (ctest sets it)")
    return path
