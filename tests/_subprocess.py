"""Run a Python script the way a user does: its own process, its own session, a hard timeout.

A hang must fail the test, never stall CI: on timeout the whole process group (the script
and any workers it started) is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_python(
    args: list[str], *, timeout: float, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python *args`` with this checkout first on ``PYTHONPATH``; fails the test on timeout."""
    path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"`python {' '.join(args)}` did not finish in {timeout} s and was killed.\n"
            f"stdout tail:\n{out[-2000:]}\nstderr tail:\n{err[-2000:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
