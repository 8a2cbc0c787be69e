"""Shared helpers for the benchmarks: machine/version banner, interleaved timing, script runs."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version


def banner(title: str) -> None:
    packages = ["pymc", "pytensor", "jax", "jaxlib", "numpyro", "blackjax", "nutpie", "numba"]
    found = []
    for p in packages:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{p} {version(p)}")
    print(f"== {title}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print("versions: " + ", ".join(found))


def per_call_us(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Per-call microseconds of each function: best of ``rounds``, rounds interleaved.

    Interleaving makes the contenders share whatever else the machine is doing; the best
    round is the least disturbed estimate of each one's own cost. Each timed round follows
    a few untimed calls of the same function, so no contender pays for the caches the
    previous one left cold (or gains from following a twin that shares its executable).
    """
    warm = max(3, calls // 5)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, f in fns.items():
            for _ in range(warm):
                f()
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls * 1e6)
    return best


def pymc_logp_dlogp(model, mode=None) -> Callable[[], object]:
    """One logp+dlogp call of ``model`` at its initial point, as PyMC's samplers make it."""
    import jax
    import numpy as np

    fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    fn._pytensor_function.trust_input = True
    x = np.concatenate([np.ravel(v) for v in model.initial_point().values()])
    return lambda: jax.block_until_ready(fn(x))  # JAX mode returns before it is done


def pure_jax_value_and_grad(model, numpy_io: bool = False) -> Callable[[], object]:
    """``jax.jit(jax.value_and_grad(...))`` of PyMC's own JAX logp of ``model``: the limit.

    With ``numpy_io`` the point comes in as a NumPy array and the value and gradient go out
    as NumPy copies, as any sampler working in NumPy (PyMC's own) needs them: the limit for
    the default backend, which crosses that boundary on every call.
    """
    import jax
    import numpy as np
    from jax.flatten_util import ravel_pytree
    from pymc.sampling.jax import get_jaxified_graph

    point = model.initial_point()
    logp_fn = get_jaxified_graph(inputs=model.value_vars, outputs=[model.logp()])
    flat, unravel = ravel_pytree([point[v.name] for v in model.value_vars])
    vg = jax.jit(jax.value_and_grad(lambda x: logp_fn(*unravel(x))[0]))
    if numpy_io:
        flat_np = np.asarray(flat).copy()
        return lambda: [np.array(a) for a in jax.block_until_ready(vg(flat_np))]
    return lambda: jax.block_until_ready(vg(flat))


def run_script(
    command: list[str], env: dict[str, str], cwd: str, timeout: float = 900.0
) -> tuple[float, str]:
    """Run ``command`` as a user runs a script: its wall seconds and its standard output.

    It starts a new session, so a timeout kills its chain processes too; a failure raises
    with the end of its standard error.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return wall, out
