"""PyMC 6's defaults and a JAX likelihood: ours beside ``pytensor.wrap_jax``, in one run.

The seed HMM (70 sequences x 50 steps, 3 states) with its likelihood wrapped by
``@as_pytensor_op`` (ours) and by ``pytensor.wrap_jax``. Two tables:

1. logp+dlogp per call, as PyMC's own NUTS makes it (``model.logp_dlogp_function``): the
   default mode (the Numba linker on pytensor 3, C on pytensor 2), ``mode="JAX"``, and the
   limit: pure JAX ``value_and_grad`` with NumPy in and out.
2. Sampling, 2 chains x ``--draws``/``--tune``: the wall of a 1-draw run first (compile and
   set-up before the first draw, in this process), then the full run's wall and µs per
   gradient evaluation, compilation included (wall / leapfrog steps): ``pm.sample()`` with
   its defaults (on pymc 6: nutpie, on its JAX backend for our model since pymc_jaxops steers
   it there, on Numba for ``wrap_jax``'s), ``backend="numba"`` (nutpie's Numba backend, what
   the defaults ran before), ``pm.sample(backend="jax")`` (nutpie's JAX backend: the whole
   model in JAX), ``nuts_sampler="pymc"`` and NumPyro.
3. With ``--cores``: chains in parallel under nutpie, the wall of 2 chains with ``cores=1``
   and with ``cores=2`` (after a 1-draw run that compiles), for nutpie's JAX backend (what
   ``pm.sample()`` runs for our model) and its Numba backend (our absorbed graph entered
   from nutpie's Rust threads in object mode), ours beside ``wrap_jax``.

Run: ``python benchmarks/bench_pymc6.py [--calls N] [--rounds R] [--draws D] [--tune T]
[--runs WORD ...]`` (``--runs numpyro``: only the sampling rows naming NumPyro).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import numpy as np
import pymc as pm
import pytensor

from benchmarks._common import banner, per_call_us, pure_jax_value_and_grad, pymc_logp_dlogp
from examples.marginal_hmm import build_model, hmm_logp, simulate

PYMC6 = int(pm.__version__.split(".")[0]) >= 6


def _per_call(ours, theirs, calls: int, rounds: int) -> None:
    fns = {
        "ours, default mode": pymc_logp_dlogp(ours),
        "wrap_jax, default mode": pymc_logp_dlogp(theirs),
        "ours, mode=JAX": pymc_logp_dlogp(ours, mode="JAX"),
        "wrap_jax, mode=JAX": pymc_logp_dlogp(theirs, mode="JAX"),
        "pure JAX, NumPy in/out": pure_jax_value_and_grad(ours, numpy_io=True),
    }
    values = {name: float(np.asarray(f()[0])) for name, f in fns.items()}
    assert np.allclose(list(values.values()), values["ours, default mode"], rtol=1e-9), values
    us = per_call_us(fns, calls, rounds)
    limit, wrap = us["pure JAX, NumPy in/out"], us["wrap_jax, default mode"]
    print(f"\n{'logp+dlogp per call':28s} {'us':>9s} {'x pure':>8s} {'x wrap_jax':>11s}")
    for name, t in us.items():
        print(f"{name:28s} {t:9.1f} {t / limit:8.2f} {t / wrap:11.2f}")


def _sample(model, draws: int, tune: int, cores: int = 2, **kwargs):
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=2,
            cores=cores,
            random_seed=1,
            progressbar=False,
            compute_convergence_checks=False,
            **kwargs,
        )
        wall = time.perf_counter() - t0
    stats = idata.sample_stats
    steps = next(stats[k] for k in ("n_steps", "tree_size") if k in stats)
    return wall, float(np.asarray(steps).sum()), idata


def _sampling(ours, theirs, draws: int, tune: int, only: list[str] | None = None) -> None:
    runs: dict[str, dict] = {"pm.sample() defaults": {}}
    if PYMC6:
        # What the defaults ran before pymc_jaxops steered nutpie to its JAX backend.
        runs["defaults, Numba backend"] = {"backend": "numba"}
        runs["pm.sample(backend='jax')"] = {"backend": "jax"}
    runs['nuts_sampler="pymc"'] = {"nuts_sampler": "pymc"}
    runs['nuts_sampler="numpyro"'] = {"nuts_sampler": "numpyro"}
    if only:
        runs = {name: kw for name, kw in runs.items() if any(word in name for word in only)}
    print(
        f"\n{'sampling, 2 chains':28s} {'model':>9s} {'set-up s':>9s} {'wall s':>8s}"
        f" {'us/grad':>9s} {'signal':>7s}"
    )
    for name, kwargs in runs.items():
        for label, model in (("ours", ours), ("wrap_jax", theirs)):
            setup, _, _ = _sample(model, 1, 1, **kwargs)
            wall, steps, idata = _sample(model, draws, tune, **kwargs)
            signal = float(idata.posterior["emission_signal"].mean())
            print(
                f"{name:28s} {label:>9s} {setup:9.1f} {wall:8.1f} {wall / steps * 1e6:9.0f}"
                f" {signal:7.3f}"
            )


def _cores(ours, theirs, draws: int, tune: int) -> None:
    print(
        f"\n{'nutpie, 2 chains':28s} {'model':>9s} {'cores=1 s':>10s} {'cores=2 s':>10s}"
        f" {'ratio':>6s}"
    )
    for backend in ("jax", "numba"):
        for label, model in (("ours", ours), ("wrap_jax", theirs)):
            _sample(model, 1, 1, backend=backend)  # compile outside the timed runs
            walls = [_sample(model, draws, tune, cores=c, backend=backend)[0] for c in (1, 2)]
            print(
                f"{'backend=' + backend:28s} {label:>9s} {walls[0]:10.1f} {walls[1]:10.1f}"
                f" {walls[1] / walls[0]:6.2f}"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per round (default 50)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--draws", type=int, default=500, help="draws per chain (default 500)")
    parser.add_argument("--tune", type=int, default=500, help="tuning steps (default 500)")
    parser.add_argument("--no-sampling", action="store_true", help="only the per-call table")
    parser.add_argument(
        "--runs", nargs="*", help="only the sampling rows whose name holds one of these words"
    )
    parser.add_argument(
        "--cores", action="store_true", help="only nutpie's cores=1 / cores=2 table (pymc 6)"
    )
    args = parser.parse_args(argv)
    banner("PyMC defaults with a JAX likelihood: seed HMM, ours vs pytensor.wrap_jax")
    emissions = simulate()
    ours = build_model(emissions)
    theirs = build_model(emissions, logp_op=pytensor.wrap_jax(hmm_logp))
    if args.cores:
        _cores(ours, theirs, args.draws, args.tune)
        return
    _per_call(ours, theirs, args.calls, args.rounds)
    if not args.no_sampling:
        _sampling(ours, theirs, args.draws, args.tune, args.runs)


if __name__ == "__main__":
    main()
