"""Time the radon and HMM models (JAX likelihoods) on every NUTS sampler a PyMC user reaches.

For each model and sampler: wall time of the whole call (compilation and process start
included), ESS per second of wall time (minimum bulk ESS over the model's scalar
parameters), and the speed-up in wall time over PyMC's own NUTS. Then the cost of one
logp+dlogp call per PyTensor backend (C, NUMBA, JAX-jitted graph).

``numpyro`` and ``blackjax`` run the chains in parallel over JAX's devices (one CPU device
per core after ``import pymc_jaxops``); ``numpyro-sequential`` and ``blackjax-vectorized``
keep them on one device, and the parallel/one-device wall-time ratio is printed per model.

Seed figures ("Using JAX for faster sampling"): radon, 2 chains, tune=2000, draws=2000,
target_accept=0.9: PyMC C NUTS 180 s, JAX NUTS 24 s (7.5x).

Run: ``python benchmarks/bench_samplers.py [--data radon.csv] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pymc as pm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import banner  # noqa: E402
from examples import marginal_hmm, radon  # noqa: E402

SAMPLERS = [
    "pymc",
    "numpyro",
    "numpyro-sequential",
    "nutpie",
    "nutpie-jax",
    "blackjax",
    "blackjax-vectorized",
]
# (parallel, one-device) pairs whose wall-time ratio is printed after each model.
PAIRS = [("numpyro", "numpyro-sequential"), ("blackjax", "blackjax-vectorized")]


def _run(model: pm.Model, sampler: str, args):
    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=args.seed)
    if sampler in ("pymc", "numpyro", "numpyro-sequential", "nutpie"):
        # numpyro: chains over JAX's CPU devices (one per core after import pymc_jaxops).
        method = "sequential" if sampler == "numpyro-sequential" else "parallel"
        return pm.sample(
            model=model,
            nuts_sampler=sampler.split("-")[0],
            nuts_sampler_kwargs={"chain_method": method} if "numpyro" in sampler else None,
            target_accept=args.target_accept,
            progressbar=False,
            compute_convergence_checks=False,
            cores=min(args.chains, os.cpu_count() or 1),
            **kw,
        )
    if sampler == "nutpie-jax":
        import nutpie

        compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax")
        return nutpie.sample(
            compiled,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            target_accept=args.target_accept,
            progress_bar=False,
        )
    if sampler in ("blackjax", "blackjax-vectorized"):
        from pymc_jaxops import sample_blackjax_nuts

        method = "vectorized" if sampler == "blackjax-vectorized" else "parallel"
        return sample_blackjax_nuts(
            model, target_accept=args.target_accept, chain_method=method, progressbar=False, **kw
        )
    raise ValueError(f"bench_samplers: unknown sampler {sampler!r}; choose from {SAMPLERS}.")


def _min_ess(idata, var_names) -> float:
    import arviz as az

    ess = az.ess(idata, var_names=var_names, method="bulk")
    return float(min(float(np.min(ess[v].values)) for v in ess.data_vars))


def bench_model(name: str, model: pm.Model, var_names, args) -> None:
    print(f"\n## {name}: {args.chains} chains, tune={args.tune}, draws={args.draws}")
    print(
        f"{'sampler':<20}{'wall s':>9}{'sampling s':>12}{'min ESS':>9}{'ESS/s':>9}{'speed-up':>10}"
    )
    base = None
    walls: dict[str, float] = {}
    for sampler in args.samplers:
        t0 = time.perf_counter()
        try:
            idata = _run(model, sampler, args)
        except ImportError as err:
            print(f"{sampler:<20} skipped: {err}")
            continue
        wall = walls[sampler] = time.perf_counter() - t0
        sampling = idata.posterior.attrs.get("sampling_time", float("nan"))
        ess = _min_ess(idata, var_names)
        base = wall if sampler == "pymc" else base
        speedup = f"{base / wall:9.1f}x" if base else "        -"
        print(f"{sampler:<20}{wall:9.1f}{sampling:12.1f}{ess:9.0f}{ess / wall:9.1f}{speedup:>10}")
    for parallel, single in PAIRS:
        if parallel in walls and single in walls:
            ratio = walls[single] / walls[parallel]
            print(f"{parallel} parallel is {ratio:.2f}x faster in wall time than {single}")


def per_call_costs(name: str, model: pm.Model, repeat: int) -> None:
    """Microseconds per logp+dlogp call, per backend (what NUTS pays per leapfrog step)."""
    import jax

    point = model.initial_point()
    x = np.concatenate([np.ravel(v) for v in point.values()])
    row: dict[str, float] = {}
    for mode in ("FAST_RUN", "NUMBA"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
        fn.set_extra_values({})
        fn(x)
        row[mode] = _best(lambda fn=fn: fn(x), repeat)
    from pymc.sampling.jax import get_jaxified_logp

    logp = get_jaxified_logp(model)
    vg = jax.jit(jax.value_and_grad(lambda *xs: logp(xs)))
    xs = [np.asarray(v) for v in point.values()]
    jax.block_until_ready(vg(*xs))
    row["JAX jit"] = _best(lambda: jax.block_until_ready(vg(*xs)), repeat)
    cells = ", ".join(f"{k} {v:.0f} us" for k, v in row.items())
    print(f"{name} logp+dlogp per call: {cells}")


def _best(fn: Callable, repeat: int) -> float:
    return min(timeit.repeat(fn, number=repeat, repeat=5)) / repeat * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["radon", "hmm"], choices=["radon", "hmm"])
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    parser.add_argument("--data", type=Path, help="radon.csv of the notebook (default: simulate)")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--tune", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--target-accept", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--quick", action="store_true", help="tune=draws=300 (smoke test)")
    parser.add_argument("--no-per-call", action="store_true", help="skip per-call timings")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws = args.tune = 300

    banner("NUTS samplers: wall time, ESS/s, speed-up over PyMC NUTS")
    import jax

    print(f"JAX devices: {len(jax.devices())} x {jax.devices()[0].platform}")
    models = {}
    if "radon" in args.models:
        data = radon.load(args.data) if args.data else radon.simulate()
        label = f"radon ({'CSV' if args.data else 'simulated'}, JAX likelihood)"
        models[label] = (
            radon.build_model(data),
            ["mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "eps", "alpha", "beta"],
        )
    if "hmm" in args.models:
        models["marginal HMM (70 x 50)"] = (
            marginal_hmm.build_model(marginal_hmm.simulate()),
            ["emission_signal", "emission_noise"],
        )
    if not args.no_per_call:
        for label, (model, _) in models.items():
            per_call_costs(label, model, repeat=200)
    for label, (model, var_names) in models.items():
        bench_model(label, model, var_names, args)


if __name__ == "__main__":
    main()
