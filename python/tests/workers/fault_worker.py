"""One rank of the Python killed-rank harness (test_failures.py), started
directly (not by torchrun, whose agent would stop the survivors itself) with
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set.

Trains a 3-unit MLP at stage 3 in fp32 with accumulation and clipping to
STEPS steps, resuming from `latest` in CKPT_DIR when there is one and saving
every SAVE_EVERY steps. The rank ZT_VICTIM SIGKILLs itself ZT_DELAY_US after
entering phase ZT_PHASE (forward, gather, backward, step, save) of step
ZT_STEP. A survivor prints the CommError and lets it propagate (exit 1, after
the interpreter's normal shutdown, which lets the store host linger for the
others' diagnosis: Note [Naming the missing ranks]); a run that ends saves
the final weights (rank 0, to CKPT_DIR/final.pt) and exits 0."""

import os
import signal
import sys
import threading
import time

import torch
from torch import nn

import zerotrain

STEPS, SAVE_EVERY, GAS, MICRO = 8, 3, 2, 2


def kill_after(delay_us):
    threading.Timer(delay_us / 1e6, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()


def main():
    ckpt = os.environ["CKPT_DIR"]
    rank = int(os.environ["RANK"])
    victim = rank == int(os.environ.get("ZT_VICTIM", "-1"))
    phase = os.environ.get("ZT_PHASE", "")
    kill_step = int(os.environ.get("ZT_STEP", "-1"))
    delay_us = int(os.environ.get("ZT_DELAY_US", "0"))
    state = {"step": -1, "armed": False}

    def arm(now):
        if victim and phase == now and state["step"] == kill_step and not state["armed"]:
            state["armed"] = True
            kill_after(delay_us)

    zerotrain.init_distributed()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    cfg = {"train_micro_batch_size_per_gpu": MICRO, "gradient_accumulation_steps": GAS, "gradient_clipping": 0.5,
           "optimizer": {"type": "AdamW", "params": {"lr": 2e-3, "weight_decay": 0.01}},
           "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
           "comm": {"timeout_s": float(os.environ.get("ZT_COMM_TIMEOUT", "3"))}}
    engine, *_ = zerotrain.initialize(model=net, model_parameters=net.parameters(), config=cfg)
    net[2].register_forward_pre_hook(lambda *_: arm("gather"))  # the second unit's gather is next
    world = engine.world_size
    g = torch.Generator().manual_seed(11)
    data = [(torch.randn(MICRO * GAS * world, 6, generator=g), torch.randn(MICRO * GAS * world, 3, generator=g))
            for _ in range(STEPS)]
    try:
        path, _ = engine.load_checkpoint(ckpt)
        if path:
            print(f"rank {rank} resumed from {path}", flush=True)
        for s in range(engine.global_steps, STEPS):
            state["step"] = s
            x, y = data[s]
            for k in range(GAS):
                rows = slice((k * world + rank) * MICRO, (k * world + rank + 1) * MICRO)
                arm("forward")
                loss = nn.functional.mse_loss(engine(x[rows]), y[rows])
                arm("backward")
                engine.backward(loss)
                if k == GAS - 1:
                    arm("step")
                engine.step()
            if (s + 1) % SAVE_EVERY == 0:
                arm("save")
                engine.save_checkpoint(ckpt)
        weights = engine.module_state_dict()
        if rank == 0:
            torch.save(weights, os.path.join(ckpt, "final.pt"))
    except zerotrain.CommError as e:
        print(f"rank {rank}: CommError at {time.monotonic():.3f}, missing ranks {e.missing_ranks}, op {e.op}: "
              f"{str(e).splitlines()[0]}", flush=True)
        raise  # as a script would: the interpreter exits with 1, running the engine's destructors

    print(f"rank {rank}: done", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
