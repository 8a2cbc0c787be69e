"""Cost of one logdensity evaluation through the Numba → JAX bridge, side by side.

Four ways to evaluate the seed's 4-component Gaussian mixture logdensity, all measured in
this one process:

* plain Numba, called from a Python loop (the reference the bridge is judged against),
  and the kernel alone in an ``njit`` loop (what is left once all call overhead is gone);
* the XLA FFI bridge (``numba_to_jax``), inside a jitted ``lax.fori_loop``;
* ``jax.pure_callback`` to the same Numba function, inside the same loop;
* the logdensity written in ``jax.numpy``, inside the same loop.

Plus value-and-gradient through the bridge (one fused FFI call) against ``jnp``.
Run: ``python benchmarks/bench_bridge.py [--n N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax

jax.config.update("jax_enable_x64", True)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import banner  # noqa: E402
from pymc_jaxops.bridge import numba_to_jax  # noqa: E402

LOC = np.array([-2.0, 0.0, 3.2, 2.5])
SCALE = np.array([1.2, 1.0, 5.0, 2.8])
WEIGHTS = np.array([0.2, 0.3, 0.1, 0.4])
LOG_NORM = np.log(WEIGHTS) - np.log(SCALE) - 0.5 * np.log(2 * np.pi)


@numba.njit(fastmath=False)
def logdensity(x):
    m = -np.inf
    terms = (0.0, 0.0, 0.0, 0.0)
    t0 = LOG_NORM[0] - 0.5 * ((x - LOC[0]) / SCALE[0]) ** 2
    t1 = LOG_NORM[1] - 0.5 * ((x - LOC[1]) / SCALE[1]) ** 2
    t2 = LOG_NORM[2] - 0.5 * ((x - LOC[2]) / SCALE[2]) ** 2
    t3 = LOG_NORM[3] - 0.5 * ((x - LOC[3]) / SCALE[3]) ** 2
    terms = (t0, t1, t2, t3)
    m = max(max(t0, t1), max(t2, t3))
    s = 0.0
    for t in terms:
        s += np.exp(t - m)
    return m + np.log(s)


@numba.njit
def dlogdensity(x):
    num = 0.0
    den = 0.0
    m = -np.inf
    for k in range(4):
        m = max(m, LOG_NORM[k] - 0.5 * ((x - LOC[k]) / SCALE[k]) ** 2)
    for k in range(4):
        z = (x - LOC[k]) / SCALE[k]
        p = np.exp(LOG_NORM[k] - 0.5 * z * z - m)
        num += p * (-z / SCALE[k])
        den += p
    return num / den


def logdensity_jnp(x):
    return jax.scipy.special.logsumexp(LOG_NORM - 0.5 * ((x - LOC) / SCALE) ** 2)


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _in_loop(f: Callable[[jax.Array], jax.Array], n: int) -> Callable[[], object]:
    # The loop carry feeds the next argument so XLA cannot hoist the call out of the loop.
    @jax.jit
    def run(x0):
        return jax.lax.fori_loop(0, n, lambda i, c: c + 1e-9 * f(x0 + 1e-6 * c), 0.0)

    run(0.3).block_until_ready()
    return lambda: run(0.3).block_until_ready()


def _in_loop_grad(f: Callable[[jax.Array], jax.Array], n: int) -> Callable[[], object]:
    vg = jax.value_and_grad(f)

    @jax.jit
    def run(x0):
        def body(i, c):
            v, g = vg(x0 + 1e-6 * c)
            return c + 1e-9 * (v + g)

        return jax.lax.fori_loop(0, n, body, 0.0)

    run(0.3).block_until_ready()
    return lambda: run(0.3).block_until_ready()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="evaluations per timing")
    p.add_argument("--n-callback", type=int, default=5_000, help="evaluations for callback")
    p.add_argument("--repeat", type=int, default=5, help="timings; the best is reported")
    args = p.parse_args()
    n, nc = args.n, args.n_callback

    out = jax.ShapeDtypeStruct((), jnp.float64)
    ffi = numba_to_jax(logdensity, out, grad=dlogdensity)
    callback = numba_to_jax(logdensity, out, grad=dlogdensity, backend="callback")
    np.testing.assert_allclose(ffi(0.3), logdensity(0.3))  # all four agree before timing
    np.testing.assert_allclose(logdensity_jnp(0.3), logdensity(0.3))

    def plain_numba() -> None:
        for _ in range(n):
            logdensity(0.3)

    def plain_numba_grad() -> None:
        for _ in range(n):
            logdensity(0.3)
            dlogdensity(0.3)

    @numba.njit
    def kernel_only(n):
        c = 0.0
        for _ in range(n):
            c += 1e-9 * logdensity(0.3 + 1e-6 * c)
        return c

    logdensity(0.3), dlogdensity(0.3), kernel_only(1)
    runners = {  # name: (run once, evaluations per run)
        "plain Numba (Python loop)": (plain_numba, n),
        "Numba kernel alone (njit loop)": (lambda: kernel_only(n), n),
        "FFI bridge (fori_loop)": (_in_loop(ffi, n), n),
        "pure_callback (fori_loop)": (_in_loop(callback, nc), nc),
        "jax.numpy (fori_loop)": (_in_loop(logdensity_jnp, n), n),
        "value+grad plain Numba (Python loop)": (plain_numba_grad, n),
        "value+grad FFI bridge (fori_loop)": (_in_loop_grad(ffi, n), n),
        "value+grad jax.numpy (fori_loop)": (_in_loop_grad(logdensity_jnp, n), n),
    }
    # Interleaved rounds, best of each: a busy neighbour slows every method alike.
    times = dict.fromkeys(runners, np.inf)
    for _ in range(args.repeat):
        for name, (run, count) in runners.items():
            times[name] = min(times[name], _best(run, 1) / count)

    banner("Numba -> JAX bridge: cost per evaluation inside a jitted loop")
    print(f"evaluations per timing: {n} ({nc} for pure_callback); best of {args.repeat}\n")
    ref = times["plain Numba (Python loop)"]
    ffi_t = times["FFI bridge (fori_loop)"]
    print(f"{'method':36s} {'µs/eval':>9s} {'÷ plain Numba':>14s} {'÷ FFI':>9s}")
    for name, t in times.items():
        print(f"{name:36s} {t * 1e6:9.3f} {t / ref:14.2f} {t / ffi_t:9.2f}")
    print(
        f"\nFFI vs plain Numba: {ffi_t / ref:.2f}x (goal <= 1.0x); "
        f"pure_callback vs FFI: {times['pure_callback (fori_loop)'] / ffi_t:.0f}x slower "
        "(goal >= 100x)"
    )


if __name__ == "__main__":
    main()
