"""ZeRO stages 0-3 through the Python package at N = 2 against PyTorch's
DistributedDataParallel with torch.optim.AdamW, elementwise, with gradient
clipping (active on some steps, not others) and two accumulated micro-batches
(workers/parity_worker.py).

Smallest wrong implementation caught: a sum instead of a mean across ranks
(the loss scaled by the world size; with clipping active on some steps only,
Adam does not hide it). It is injected by the second test, which must see the
worker fail: differences up to 1.6e-3 against a tolerance of 1e-5."""

from conftest import HERE, torchrun


def test_every_stage_matches_ddp_adamw_at_two_ranks():
    r = torchrun(HERE / "workers" / "parity_worker.py")
    assert r.returncode == 0, r.stdout[-4000:]
    for stage in range(4):
        assert f"rank 0 stage {stage}: 5 units" in r.stdout, r.stdout[-4000:]


def test_the_parity_check_fails_on_a_sum_across_ranks():
    r = torchrun(HERE / "workers" / "parity_worker.py", "--inject", "sum_across_ranks", "--stages", "2")
    assert r.returncode != 0, r.stdout[-4000:]
    assert "differs from DDP" in r.stdout
