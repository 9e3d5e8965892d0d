"""Failures from Python. A dead rank: the survivor gets zerotrain.CommError
(a RuntimeError) naming the lost rank within the comm timeout plus 5 s, and
the interpreter lives to handle it (workers/dead_rank_worker.py); catches a
collective that hangs on a vanished peer, an error that aborts the process,
and one that does not name the rank. Ctrl-C: a training loop is
interrupted."""

from conftest import HERE, torchrun


def test_a_vanished_rank_is_a_python_exception_naming_it():
    r = torchrun(HERE / "workers" / "dead_rank_worker.py", timeout=120)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "rank 0: CommError after" in r.stdout and "missing ranks [1]" in r.stdout, r.stdout[-4000:]


def test_ctrl_c_interrupts_a_training_loop():
    """SIGINT during a loop of engine calls (which release the GIL) becomes
    KeyboardInterrupt in the script within seconds; the process is not killed
    and does not hang. The child gets SIGINT's default disposition back: a
    process started in the background by a shell ignores it."""
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, str(HERE / "workers" / "endless_worker.py")], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in p.stdout:  # the engine is up and the loop has begun
            if line.strip() == "training":
                break
        time.sleep(2)
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, out
    assert "KeyboardInterrupt after" in out and time.monotonic() - start < 10, out
