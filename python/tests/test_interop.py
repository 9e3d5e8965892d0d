"""Checkpoints cross between the C++ and the Python front ends: one format,
one engine.

- C++ to Python: the checkpoint the C++ engine saved at 2 ranks and stage 2
  (tests/checkpoint/data) loads into the same network written in PyTorch at
  stage 3, and the next step lands where the C++ engine's did, within 1e-6
  (workers/cpp_checkpoint_worker.py). Catches a Python model whose parameter
  names or order differ from the checkpoint's, a load that drops the moments
  (the next step's update differs), or the step counter not restored.
- Python to C++: what the Python engine saves, the C++ CLI exports
  (`zerotrain checkpoint export`) to the weights the Python module holds and
  to the fp32 master weights, bit for bit."""

import os
import subprocess

import pytest
import torch
from torch import nn

import zerotrain
from conftest import CONFIGS, HERE, ROOT, program, torchrun

V1 = ROOT / "tests" / "checkpoint" / "data" / "v1_mlp_zero2_bf16_n2"


@pytest.mark.skipif(not V1.is_dir(), reason="needs the clone's tests/checkpoint/data")
def test_a_cpp_checkpoint_continues_exactly_in_python_at_another_stage():
    r = torchrun(HERE / "workers" / "cpp_checkpoint_worker.py", V1, CONFIGS / "zero2_bf16.json")
    assert r.returncode == 0, r.stdout[-4000:]
    assert "rank 0: loaded" in r.stdout and "6 master tensors compared, 0 differ" in r.stdout


def test_a_python_checkpoint_exports_with_the_cpp_cli(tmp_path):
    cli = program("ZEROTRAIN_CLI")
    from safetensors.torch import load_file
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 2))
    cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 0.5, "bf16": {"enabled": True},
           "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}}, "zero_optimization": {"stage": 2}}
    engine, *_ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
    for i in range(3):
        x, y = torch.randn(4, 5, dtype=torch.bfloat16), torch.randn(4, 2)
        engine.backward(nn.functional.mse_loss(engine(x).float(), y))
        engine.step()
    engine.save_checkpoint(str(tmp_path / "ckpt"))
    for dtype, want in (("bf16", {n: p.detach() for n, p in net.named_parameters()}),
                        ("fp32", {n: engine.full_fp32_param(n) for n, _ in net.named_parameters()})):
        out = tmp_path / f"{dtype}.safetensors"
        subprocess.run([cli, "checkpoint", "export", str(tmp_path / "ckpt"), "--out", str(out), "--dtype", dtype],
                       check=True, timeout=120)
        got = load_file(str(out))
        assert sorted(got) == sorted(want)
        for name, t in want.items():
            assert torch.equal(got[name], t.reshape(got[name].shape)), (dtype, name)
    engine.destroy()
