"""Ctrl-C during multi-process pm.sample with our Ops stops everything, whatever the shell.

The script runs in a session of its own with SIGINT at its default disposition even when
pytest itself was started with SIGINT ignored (``nohup``, ``cmd &`` in a non-interactive
script): ``tests/_subprocess.py`` resets it for the child.
"""

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests import _subprocess

SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import jax.numpy as jnp
    import numpy as np
    import pymc as pm
    from pymc_jaxops import as_pytensor_op

    @as_pytensor_op
    def loglik(data, mu):
        return jnp.sum(-0.5 * (data - mu) ** 2)

    sampling = set()

    def report_workers_once_they_sample(trace, draw):
        # Called in the parent for every draw a worker sends: both chains are past tuning.
        if not draw.tuning and draw.chain not in sampling:
            sampling.add(draw.chain)
            if len(sampling) == 2:
                pids = [c.pid for c in multiprocessing.active_children()]
                print("WORKERS", *pids, flush=True)

    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Potential("lik", loglik(np.random.default_rng(0).normal(size=100), mu))
        # PyMC catches the KeyboardInterrupt and returns the draws made so far.
        idata = pm.sample(
            draws=10**6, tune=100, chains=2, cores=2, progressbar=False, nuts_sampler="pymc",
            callback=report_workers_once_they_sample, compute_convergence_checks=False,
        )
        print("RETURNED", idata.posterior.sizes["draw"], flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
@pytest.mark.parametrize("who", ["process_group", "parent_only"])
@pytest.mark.parametrize("chains_in", ["processes", "threads"])
def test_ctrl_c_leaves_no_workers(tmp_path, who, chains_in):
    # "process_group" is Ctrl-C in a terminal (every process of the foreground group gets
    # SIGINT); "parent_only" is `kill -INT <pid>`.
    script = tmp_path / "sample.py"
    script.write_text(SCRIPT)
    # Long chains of a cheap model run in processes; "always" puts them in threads.
    setting = "off" if chains_in == "processes" else "always"
    env = {"PYMC_JAXOPS_CHAIN_THREADS": setting}
    proc = _subprocess.start([str(script)], env, stdin=subprocess.DEVNULL)
    try:
        line = _subprocess.line_starting(proc, "WORKERS", timeout=300)
        if line is None:
            _subprocess.kill_session(proc)
            raise AssertionError(f"workers never started:\n{proc.stderr.read()[-3000:]}")
        if who == "process_group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        left = _subprocess.wait_for_no_processes(proc.pid, grace_s=30)
    finally:
        _subprocess.kill_session(proc)
    returned = [line for line in out.splitlines() if line.startswith("RETURNED")]
    assert returned, err[-3000:]
    assert 0 < int(returned[0].split()[1]) < 10**6  # stopped early, with the draws so far
    assert not left, f"processes outlived the interrupt: {left}"
