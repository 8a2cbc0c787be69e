"""Run a script the way a user does: a fresh ``python`` process, never left running.

Each run gets its own session, so on timeout the whole process group (the script and every
worker it started) is killed and the test fails instead of stalling CI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return {**os.environ, "PYTHONPATH": path}


def session_processes(sid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_for_no_processes(sid: int, grace_s: float = 15.0) -> list[int]:
    """Poll until session ``sid`` is empty or ``grace_s`` passed; return who is left."""
    deadline = time.monotonic() + grace_s
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    # A signal ignored here stays ignored in the child across exec, and Python then never
    # raises KeyboardInterrupt (pytest started under nohup, `cmd &` in a script, some CI
    # runners). A handled one is reset to the default, as in an interactive shell.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start(
    args: list[str],
    extra_env: dict[str, str] | None = None,
    *,
    full_env: dict[str, str] | None = None,
    **kwargs,
) -> subprocess.Popen:
    """Start ``python *args`` in a session of its own, with Ctrl-C working in it.

    ``extra_env`` is added to this process's environment; ``full_env`` replaces it.
    """
    kwargs.setdefault("cwd", str(ROOT))
    with _sigint_not_ignored():
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env if full_env is not None else {**env(), **(extra_env or {})},
            start_new_session=True,
            **kwargs,
        )


def line_starting(proc: subprocess.Popen, prefix: str, timeout: float) -> str | None:
    """The first line of ``proc``'s stdout that starts with ``prefix``, or None if none came
    within ``timeout`` seconds or the process ended first.

    The lines are read in a thread that stops at that line, so a child that goes quiet
    cannot block the test past its deadline; the rest of stdout stays for ``communicate``.
    """
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        try:
            for line in iter(proc.stdout.readline, ""):
                if line.startswith(prefix):
                    found.append(line)
                    break
        finally:
            done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    return found[0] if found else None


def kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Result:
    returncode: int
    out: str
    err: str
    orphans: list[int]  # processes of the script's session still alive after it ended


def finish(
    proc: subprocess.Popen, timeout: float, stdin: str | None = None
) -> tuple[int, str, str]:
    """Wait for ``proc``; on timeout kill its process group and fail with its output."""
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        out, err = proc.communicate(timeout=60)
        raise AssertionError(
            f"`{' '.join(map(str, proc.args))}` ran past {timeout} s and was killed\n"
            f"stdout:\n{out[-3000:]}\nstderr:\n{err[-4000:]}"
        ) from None
    return proc.returncode, out, err


def _to_end(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        return finish(proc, timeout)
    finally:
        kill_session(proc)  # whatever is left must not outlive the test


def run(
    args: list[str],
    timeout: float,
    stdin: str | None = None,
    grace_s: float = 15.0,
    extra_env: dict[str, str] | None = None,
) -> Result:
    """Run ``python *args`` to the end; on timeout kill its process group and fail."""
    stdin_mode = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
    proc = start(args, extra_env, stdin=stdin_mode)
    try:
        code, out, err = finish(proc, timeout, stdin)
        orphans = wait_for_no_processes(proc.pid, grace_s)
    finally:
        kill_session(proc)
    return Result(code, out, err, orphans)


# --- scripts that configure JAX devices: a clean device setting, plain (code, out, err) ---


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any JAX device-count setting, plus ``extra``."""
    clean = {
        k: v
        for k, v in env().items()
        if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "PYMC_JAXOPS_CPU_DEVICES")
    }
    return {**clean, **extra}


def start_script(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start([str(script), *args], full_env=env or child_env(), stdin=subprocess.DEVNULL)


def run_script(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, str, str]:
    """Run ``script`` to the end in its own session; return ``(returncode, stdout, stderr)``."""
    return _to_end(start_script(script, *args, env=env), timeout)


def run_python(
    args: list[str], *, timeout: float, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python *args`` with this checkout first on ``PYTHONPATH``; fails the test on timeout."""
    proc = start(args, env, cwd=str(cwd or ROOT), stdin=subprocess.DEVNULL)
    code, out, err = _to_end(proc, timeout)
    return subprocess.CompletedProcess(proc.args, code, out, err)


def run_python_with_payload(
    code: str, payload: bytes, *, timeout: float
) -> subprocess.CompletedProcess:
    """``python -c code PATH``, where the file at ``PATH`` (``sys.argv[1]``) holds ``payload``.

    For pickles handed to a fresh process: a file, because this module's pipes carry text.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pkl"
        path.write_bytes(payload)
        return run_python(["-c", code, str(path)], timeout=timeout)
