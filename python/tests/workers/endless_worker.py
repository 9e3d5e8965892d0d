"""Trains until interrupted (one process); on KeyboardInterrupt prints how many
steps it took and exits 0. test_failures.py sends it SIGINT."""

import torch

import zerotrain

net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
cfg = {"train_micro_batch_size_per_gpu": 8, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
       "zero_optimization": {"stage": 2}, "steps_per_print": 1_000_000}
engine, *_ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
print("training", flush=True)
try:
    while True:
        engine.backward(engine(torch.randn(8, 64)).pow(2).mean())
        engine.step()
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {engine.global_steps} steps", flush=True)
