"""Ctrl-C during multi-process pm.sample with our Ops stops everything, whatever the shell.

The script runs in a session of its own with SIGINT at its default disposition even when
pytest itself was started with SIGINT ignored (``nohup``, ``cmd &`` in a non-interactive
script): ``tests/_subprocess.py`` resets it for the child.
"""

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests import _subprocess

SCRIPT = textwrap.dedent(
    """
    import multiprocessing, threading, time
    import jax.numpy as jnp
    import numpy as np
    import pymc as pm
    from pymc_jaxops import as_pytensor_op

    @as_pytensor_op
    def loglik(data, mu):
        return jnp.sum(-0.5 * (data - mu) ** 2)

    def report_workers_once_they_run():
        while len(multiprocessing.active_children()) < 2:
            time.sleep(0.2)
        time.sleep(8)  # let the workers import, unpickle and start sampling
        print("WORKERS", *[c.pid for c in multiprocessing.active_children()], flush=True)

    threading.Thread(target=report_workers_once_they_run, daemon=True).start()
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


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
@pytest.mark.parametrize("who", ["process_group", "parent_only"])
def test_ctrl_c_leaves_no_workers(tmp_path, who):
    # "process_group" is Ctrl-C in a terminal (every process of the foreground group gets
    # SIGINT); "parent_only" is `kill -INT <pid>`.
    script = tmp_path / "sample.py"
    script.write_text(SCRIPT)
    proc = _subprocess.start([str(script)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        line = ""
        while time.monotonic() < deadline and not line.startswith("WORKERS"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert line.startswith("WORKERS"), f"workers never started:\n{proc.stderr.read()[-3000:]}"
        if who == "process_group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        left = _subprocess.wait_for_no_processes(proc.pid, grace_s=30)
    finally:
        _subprocess.kill_session(proc)
    assert "INTERRUPTED" in out, err[-3000:]
    assert "LEFT 0" in out.splitlines()
    assert not left, f"processes outlived the interrupt: {left}"
