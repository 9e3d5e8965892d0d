"""A dead rank from Python: the survivor gets zerotrain.CommError (a
RuntimeError) naming the lost rank within the comm timeout plus 5 s, and the
interpreter lives to handle it (workers/dead_rank_worker.py). Catches a
collective that hangs on a vanished peer, an error that aborts the process,
and one that does not name the rank."""

from conftest import HERE, torchrun


def test_a_vanished_rank_is_a_python_exception_naming_it():
    r = torchrun(HERE / "workers" / "dead_rank_worker.py", timeout=120)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "rank 0: CommError after" in r.stdout and "missing ranks [1]" in r.stdout, r.stdout[-4000:]
