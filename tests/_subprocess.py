"""Run a Python script in a fresh interpreter that cannot stall the test run.

Each child gets its own session, so on timeout the whole process group (the child and
anything it started) is killed and the test fails instead of hanging CI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.pop("PYMC_JAXOPS_CPU_DEVICES", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def start(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for ``proc``; on timeout kill its process group and fail with its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"child timed out after {timeout} s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
        ) from None
    return proc.returncode, out, err


def kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``script`` to the end; return ``(returncode, stdout, stderr)``."""
    return finish(start(script, *args, env=env), timeout)
