"""Run under torchrun --nproc-per-node=2: rank 1 vanishes after two steps
(os._exit, as a killed process would); rank 0 must get a Python exception,
zerotrain.CommError naming rank 1, within the config's comm timeout, not a
hang or an abort. Prints the outcome; exits 0 when rank 0 saw exactly that."""

import os
import sys
import time

import torch
from torch import nn

import zerotrain

TIMEOUT_S = 5.0


def main():
    zerotrain.init_distributed()
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    cfg = {"train_micro_batch_size_per_gpu": 2, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
           "zero_optimization": {"stage": 2}, "comm": {"timeout_s": TIMEOUT_S}}
    engine, *_ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
    rank = engine.global_rank
    start = None
    try:
        for step in range(50):
            if step == 2:
                if rank == 1:
                    os._exit(0)  # gone without a word; exit 0 so that torchrun does not stop rank 0 first
                start = time.monotonic()
            loss = nn.functional.mse_loss(engine(torch.randn(2, 4)), torch.randn(2, 2))
            engine.backward(loss)
            engine.step()
    except zerotrain.CommError as e:
        waited = time.monotonic() - start
        print(f"rank {rank}: CommError after {waited:.1f} s, missing ranks {e.missing_ranks}, op {e.op}: {e}",
              flush=True)
        ok = e.missing_ranks == [1] and waited < TIMEOUT_S + 5
        os._exit(0 if ok else 3)
    print(f"rank {rank}: no error after rank 1 left", flush=True)
    os._exit(4)


if __name__ == "__main__":
    main()
