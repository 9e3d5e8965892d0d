"""Run under torchrun: zerotrain at ZeRO stages 0-3 against DistributedDataParallel
with torch.optim.AdamW on the same data, clipping and gradient accumulation on.
Each rank checks every parameter elementwise and exits non-zero on a mismatch.

    torchrun --nproc-per-node=2 parity_worker.py [--inject NAME] [--device cuda] [--backend gloo]

On a GPU (scripts/gpu_check.sh) the model and data live on cuda:LOCAL_RANK
mod the device count; with --backend gloo two ranks may share one GPU.
"""

import argparse
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import zerotrain

MICRO, GAS, STEPS = 3, 2, 6
LR, WD, CLIP = 5e-3, 0.1, 2.8


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return x + torch.tanh(self.norm(self.fc(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(7, 12)
        self.blocks = nn.ModuleList(Block(12) for _ in range(3))
        self.out = nn.Linear(12, 5)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        return self.out(h)


def make_net():
    torch.manual_seed(1234)
    return Net()


DEVICE = torch.device("cpu")


def data(step, micro, rank, world):
    g = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(MICRO * world, 7, generator=g)
    y = torch.randn(MICRO * world, 5, generator=g)
    return x[rank * MICRO:(rank + 1) * MICRO].to(DEVICE), y[rank * MICRO:(rank + 1) * MICRO].to(DEVICE)


def reference(rank, world):
    net = make_net().to(DEVICE)
    ddp = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    clipped = 0
    for step in range(STEPS):
        for k in range(GAS):
            x, y = data(step, k, rank, world)
            if k < GAS - 1:
                with ddp.no_sync():
                    (nn.functional.mse_loss(ddp(x), y) / GAS).backward()
            else:
                (nn.functional.mse_loss(ddp(x), y) / GAS).backward()
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        clipped += int(norm > CLIP)
        opt.step()
        opt.zero_grad()
    return {n: p.detach().clone().cpu() for n, p in net.named_parameters()}, clipped


def zerotrain_run(stage, rank, world, inject):
    net = make_net().to(DEVICE)
    cfg = {"train_micro_batch_size_per_gpu": MICRO, "gradient_accumulation_steps": GAS, "gradient_clipping": CLIP,
           "optimizer": {"type": "AdamW", "params": {"lr": LR, "betas": [0.9, 0.999], "eps": 1e-8,
                                                     "weight_decay": WD}},
           "zero_optimization": {"stage": stage, "reduce_bucket_size": 200}}
    if stage == 3:
        cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    engine, _, _, _ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
    units = engine.units()
    for step in range(STEPS):
        for k in range(GAS):
            x, y = data(step, k, rank, world)
            loss = nn.functional.mse_loss(engine(x), y)
            if inject == "sum_across_ranks":
                loss = loss * world
            engine.backward(loss)
            engine.step()
    state = {n: t.cpu() for n, t in engine.module_state_dict().items()}
    engine.destroy()
    return state, units


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inject", default="")
    p.add_argument("--stages", default="0,1,2,3")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backend", default=None, help="torch.distributed backend (default: the accelerator's)")
    a = p.parse_args()
    global DEVICE
    if a.device == "cuda":
        DEVICE = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(DEVICE)
    zerotrain.init_distributed(dist_backend=a.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    want, clipped = reference(rank, world)
    assert 0 < clipped < STEPS, f"clipping must be active on some steps and not others ({clipped} of {STEPS})"
    failures = 0
    for stage in [int(s) for s in a.stages.split(",")]:
        got, units = zerotrain_run(stage, rank, world, a.inject)
        worst = 0.0
        for name, w in want.items():
            g = got[name]
            worst = max(worst, (g - w).abs().max().item())
            if not torch.allclose(g, w, rtol=1e-5, atol=1e-6):
                failures += 1
                print(f"rank {rank} stage {stage}: {name} differs from DDP by up to "
                      f"{(g - w).abs().max().item():.3g}", flush=True)
        print(f"rank {rank} stage {stage}: {len(units)} units, largest difference from DDP {worst:.3g}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
