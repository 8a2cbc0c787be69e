"""sample_blackjax_nuts across two jax.distributed CPU processes on 127.0.0.1."""

import socket
from pathlib import Path

import pytest

from tests import _subprocess

SCRIPT = Path(__file__).parent / "scripts" / "distributed_run.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_the_chains_and_recover_the_truth():
    port = str(_free_port())
    # One CPU device per process: the 4 chains run 2 per device, on two processes.
    env = _subprocess.child_env(JAX_NUM_CPU_DEVICES="1")
    procs = [_subprocess.start_script(SCRIPT, str(i), port, env=env) for i in (0, 1)]
    try:
        results = [_subprocess.finish(p, timeout=420) for p in procs]
    finally:
        for p in procs:
            _subprocess.kill_session(p)
    for code, out, err in results:
        assert code == 0, f"{out}\n{err[-3000:]}"
        assert "DEVICES 1 2" in out.splitlines()
    lines = results[0][1].splitlines()
    _, chains, draws, mu, sigma = next(ln for ln in lines if ln.startswith("RESULT")).split()
    assert (int(chains), int(draws)) == (4, 300)
    assert abs(float(mu) - 1.5) < 0.15 and abs(float(sigma) - 0.7) < 0.1
