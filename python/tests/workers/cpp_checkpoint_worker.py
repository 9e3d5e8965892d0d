"""Run under torchrun --nproc-per-node=2: loads the checkpoint the C++ engine
saved at ZeRO stage 2 (tests/checkpoint/data/v1_mlp_zero2_bf16_n2, its
README says how) into the same network written in PyTorch, at stage 3, takes
the next optimizer step the C++ test takes, and compares the fp32 master
weights with the ones the C++ engine reached (expected_next_master.safetensors),
elementwise within 1e-6. Exits non-zero on a mismatch.

    torchrun --nproc-per-node=2 cpp_checkpoint_worker.py CHECKPOINT_DIR
"""

import sys

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

import zerotrain


class Mlp(nn.Module):  # tests/engine/training.h's Mlp
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.l2 = nn.Linear(16, 16)
        self.l3 = nn.Linear(16, 3)

    def forward(self, x):
        return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(x)))))


def main():
    ckpt = sys.argv[1]
    zerotrain.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, "the C++ run used 2 ranks; this worker repeats its data layout"
    # The C++ test's config: configs/zero2_bf16.json as tests/engine/training.h's test_config edits it.
    with open(sys.argv[2]) as f:
        import json
        cfg = json.load(f)
    cfg.pop("scheduler", None)
    cfg.pop("train_batch_size", None)
    cfg.pop("steps_per_print", None)
    cfg.update(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=2, gradient_clipping=0.05)
    cfg["optimizer"]["params"].update(lr=2e-3, weight_decay=0.01)
    cfg["zero_optimization"] = {"stage": 3, "reduce_bucket_size": 300, "stage3_param_persistence_threshold": 0}
    torch.manual_seed(99)
    net = Mlp()
    engine, *_ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
    path, _ = engine.load_checkpoint(ckpt)
    assert engine.global_steps == 3, engine.global_steps
    # make_data(model, 4, 8) with seed 11: the same generator in LibTorch and PyTorch.
    torch.manual_seed(11)
    data = [(torch.randn(8, 6), torch.randn(8, 3)) for _ in range(4)]
    x, y = data[3]
    for k in range(2):  # training.h's rows(): micro-batch k of rank r
        rows = slice((k * world + rank) * 2, (k * world + rank) * 2 + 2)
        loss = nn.functional.mse_loss(engine(x[rows].to(torch.bfloat16)).float(), y[rows])
        engine.backward(loss)
        engine.step()
    expected = load_file(f"{ckpt}/expected_next_master.safetensors")
    bad = 0
    for name, want in expected.items():
        got = engine.full_fp32_param(name)
        if not torch.allclose(got.reshape(-1), want.reshape(-1), rtol=1e-6, atol=1e-8):
            bad += 1
            print(f"rank {rank}: {name} differs by up to {(got.reshape(-1) - want.reshape(-1)).abs().max():.3g}")
    print(f"rank {rank}: loaded {path}, {len(expected)} master tensors compared, {bad} differ", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
