"""zerotrain against DeepSpeed, side by side: the same PyTorch GPT, config and
data under DeepSpeed and under zerotrain (`import zerotrain as deepspeed`),
at N = 2 on CPU for ZeRO stages 1, 2 and 3, runs alternated to cancel drift.
Prints, per stage, the slowest rank's median step time, the per-rank peak
RSS and the largest loss difference, with the ratios zerotrain / DeepSpeed.

DeepSpeed lives in its own directory, used only here. On CPU it runs with
DS_ACCELERATOR=cpu, Gloo, and torch's AdamW through "torch_adam": true (its
own CPU Adam is an op it would compile at run time); zerotrain runs its fused
CPU AdamW (it rejects torch_adam). Everything else in the config is the same:

    python -m pip install --target ~/.cache/zerotrain/deepspeed-0.19.6 --no-deps deepspeed==0.19.6 \
        hjson ninja py-cpuinfo pydantic pydantic_core annotated_types typing_inspection msgpack psutil \
        einops tqdm nvidia-ml-py          # DS_BUILD_OPS=0 DS_ACCELERATOR=cpu
    python benchmarks/vs_deepspeed.py --deepspeed-path ~/.cache/zerotrain/deepspeed-0.19.6 --rounds 2

zerotrain must be importable by the same Python (pip install ./python, or
--zerotrain-path to a directory holding the package). The worker mode
(--worker) is what torchrun runs; the driver runs it.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---- the worker: one framework, one stage, under torchrun -------------------

def worker(a):
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn import functional as F

    if a.framework == "deepspeed":
        import deepspeed
    else:
        import zerotrain as deepspeed
    sys.path.insert(0, str(HERE / "e2e"))
    from pytorch_gpt import Gpt

    deepspeed.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1)
    vocab = 256
    model = Gpt(vocab, a.context, a.layers, a.heads, a.width)
    config = {
        "train_micro_batch_size_per_gpu": a.batch, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8,
                                                  "weight_decay": 0.1}},
        "zero_optimization": {"stage": a.stage, "overlap_comm": True, "reduce_bucket_size": 500_000_000,
                              "allgather_bucket_size": 500_000_000},
        "steps_per_print": 1_000_000,
    }
    if a.stage == 3:
        config["zero_optimization"].pop("allgather_bucket_size")
    if a.framework == "deepspeed":
        config["optimizer"]["params"]["torch_adam"] = True  # DeepSpeed's CPU Adam is not built
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    gen = torch.Generator().manual_seed(1000 + rank)
    data = [torch.randint(0, vocab, (a.batch, a.context + 1), generator=gen) for _ in range(a.steps)]
    times, losses = [], []
    phases = {"forward": [], "backward": [], "step": []}  # where a difference comes from
    for step in range(a.steps):
        x = data[step]
        start = time.perf_counter()
        logits = engine(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), x[:, 1:].reshape(-1))
        t1 = time.perf_counter()
        engine.backward(loss)
        t2 = time.perf_counter()
        engine.step()
        t3 = time.perf_counter()
        times.append(t3 - start)
        for name, t in (("forward", t1 - start), ("backward", t2 - t1), ("step", t3 - t2)):
            phases[name].append(t)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    median = torch.tensor([statistics.median(times[a.warmup:])] +
                          [statistics.median(phases[k][a.warmup:]) for k in ("forward", "backward", "step")])
    dist.all_reduce(median, op=dist.ReduceOp.MAX)  # the slowest rank's
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0])
    all_rss = [torch.zeros(1) for _ in range(world)]
    dist.all_gather(all_rss, rss)
    if rank == 0:
        with open(a.out, "w") as f:
            json.dump({"step_s": median[0].item(), "phases_s": median[1:].tolist(),
                       "peak_rss": [r.item() for r in all_rss], "losses": losses}, f)
    dist.barrier()
    dist.destroy_process_group()


# ---- the driver ----------------------------------------------------------------

def run(a, framework, stage):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED="1")
    paths = [p for p in (a.deepspeed_path if framework == "deepspeed" else a.zerotrain_path,
                         env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if framework == "deepspeed":
        env["DS_ACCELERATOR"] = "cpu"
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={a.nproc}",
           __file__, "--worker", "--framework", framework, "--stage", str(stage), "--out", out,
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--layers", str(a.layers), "--width", str(a.width),
           "--heads", str(a.heads), "--context", str(a.context), "--batch", str(a.batch)]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{framework} at stage {stage} failed:\n{r.stdout[-3000:]}")
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result


def driver(a):
    rows = []
    for stage in a.stages:
        got = {"zerotrain": [], "deepspeed": []}
        for rnd in range(a.rounds):
            order = ("zerotrain", "deepspeed") if rnd % 2 == 0 else ("deepspeed", "zerotrain")
            for fw in order:
                got[fw].append(run(a, fw, stage))
                print(f"stage {stage} round {rnd + 1} {fw}: {got[fw][-1]['step_s'] * 1e3:.1f} ms/step", flush=True)
        zt_t = statistics.median(r["step_s"] for r in got["zerotrain"])
        ds_t = statistics.median(r["step_s"] for r in got["deepspeed"])
        zt_m = statistics.median(max(r["peak_rss"]) for r in got["zerotrain"])
        ds_m = statistics.median(max(r["peak_rss"]) for r in got["deepspeed"])
        dl = max(abs(x - y) / abs(y) for x, y in zip(got["zerotrain"][0]["losses"], got["deepspeed"][0]["losses"]))
        phase = {fw: [statistics.median(r["phases_s"][i] for r in got[fw]) for i in range(3)] for fw in got}
        rows.append((stage, zt_t, ds_t, zt_m, ds_m, dl, got["zerotrain"][0]["losses"][-1],
                     got["deepspeed"][0]["losses"][-1], phase))
    print(f"\nGPT layers={a.layers} width={a.width} heads={a.heads} context={a.context}, batch {a.batch} per rank, "
          f"fp32, N = {a.nproc} on CPU, {a.threads} thread(s) per rank, {a.steps} steps ({a.warmup} warm-up), "
          f"{a.rounds} alternated round(s); median of rounds\n")
    print("| stage | zerotrain ms/step | DeepSpeed ms/step | time ratio (target <= 0.8) | zerotrain peak RSS | "
          "DeepSpeed peak RSS | RSS ratio (target <= 1.0) | largest relative loss difference | final loss zt / ds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, zt_t, ds_t, zt_m, ds_m, dl, zl, dsl, _ in rows:
        print(f"| {stage} | {zt_t * 1e3:.1f} | {ds_t * 1e3:.1f} | {zt_t / ds_t:.2f}x | {zt_m / 2**20:.0f} MiB | "
              f"{ds_m / 2**20:.0f} MiB | {zt_m / ds_m:.2f}x | {dl:.1e} | {zl:.4f} / {dsl:.4f} |")
    # Where the time goes: the slowest rank's median per phase. forward is the
    # model's own forward (plus stage 3's gathers), backward includes the
    # reductions issued during it, step the optimizer and what follows it.
    print("\n| stage | phase | zerotrain ms | DeepSpeed ms | zerotrain - DeepSpeed ms |")
    print("|---|---|---|---|---|")
    for stage, *_, phase in rows:
        for i, name in enumerate(("forward", "backward", "step")):
            z, d = phase["zerotrain"][i] * 1e3, phase["deepspeed"][i] * 1e3
            print(f"| {stage} | {name} | {z:.1f} | {d:.1f} | {z - d:+.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", choices=["zerotrain", "deepspeed"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stages", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    p.add_argument("--deepspeed-path", default=os.path.expanduser("~/.cache/zerotrain/deepspeed-0.19.6"))
    p.add_argument("--zerotrain-path", default="")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    if a.worker:
        worker(a)
    else:
        if not Path(a.deepspeed_path).is_dir():
            sys.exit(f"vs_deepspeed: no DeepSpeed at {a.deepspeed_path}; see this file's docstring")
        driver(a)


if __name__ == "__main__":
    main()
