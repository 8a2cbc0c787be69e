"""KeyboardInterrupt during multiprocess pm.sample with our Ops leaves no worker behind."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, signal, sys, threading, time
    import jax.numpy as jnp
    import numpy as np
    import pymc as pm
    from pymc_jaxops import as_pytensor_op

    @as_pytensor_op
    def loglik(data, mu):
        return jnp.sum(-0.5 * (data - mu) ** 2)

    def interrupt_once_workers_run():
        deadline = time.time() + 240
        while time.time() < deadline:
            children = multiprocessing.active_children()
            if len(children) >= 2:
                time.sleep(8)  # let the workers import, unpickle and start sampling
                print("WORKERS", *[c.pid for c in children], flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.2)

    if __name__ == "__main__":
        threading.Thread(target=interrupt_once_workers_run, daemon=True).start()
        with pm.Model():
            mu = pm.Normal("mu", 0, 1)
            pm.Potential("lik", loglik(np.random.default_rng(0).normal(size=100), mu))
            try:
                pm.sample(draws=10**6, tune=1000, chains=2, cores=2, progressbar=False)
            except KeyboardInterrupt:
                print("INTERRUPTED", flush=True)
        print("LEFT", len(multiprocessing.active_children()), flush=True)
    """
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has exited


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_keyboard_interrupt_leaves_no_workers(tmp_path):
    script = tmp_path / "sample.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=420, env=env
    )
    lines = out.stdout.splitlines()
    workers = [line for line in lines if line.startswith("WORKERS")]
    assert workers, f"workers never started:\n{out.stdout}\n{out.stderr[-3000:]}"
    pids = [int(p) for p in workers[0].split()[1:]]
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.5)
    assert not [p for p in pids if _alive(p)], "worker processes outlived the interrupt"
    assert "LEFT 0" in lines
