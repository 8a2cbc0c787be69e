"""A logdensity JAX cannot trace, sampled by BlackJAX and NumPyro through the XLA FFI bridge.

The seed: "Use a logdensity function that is not compatible with JAX's primitives". The
logdensity of a 4-component Gaussian mixture is written in Numba; ``numba_to_jax`` turns it
(and its hand-written gradient) into a JAX function that runs as an XLA FFI custom call, so
BlackJAX's NUTS (with window adaptation) and NumPyro's NUTS (``potential_fn``) jit their
whole sampling loop around it. The draws are compared with the true mixture density.

Run: ``python examples/numba_mixture.py [--out DIR] [--draws N] [--warmup N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    out = Path(__file__).parent / "out"
    parser.add_argument(
        "--out", type=Path, default=out, help="folder for the PNG plot (default: %(default)s)"
    )
    parser.add_argument(
        "--draws", type=int, default=2000, help="draws kept per chain (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="adaptation steps per chain, then discarded (default: %(default)s)",
    )
    parser.add_argument(
        "--chains", type=int, default=2, help="chains per sampler (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds both samplers (default: %(default)s)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # before the heavy imports below: --help answers at once

# pymc_jaxops first: importing it gives JAX one CPU device per core, which it can only do
# before JAX starts (the count is fixed from then on), and importing blackjax, numpyro or
# jax.numpy starts JAX. Imported after them, it finds one device and warns instead.
from pymc_jaxops.bridge import numba_to_jax

# isort: split
import jax

jax.config.update("jax_enable_x64", True)

import blackjax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numba
import numpy as np
from numpyro.infer import MCMC, NUTS

try:
    from examples._arviz import from_draws
    from examples._diagnostics import explain
    from examples._quiet import quiet_known_noise
except ImportError:  # run as a script: examples/ itself is on sys.path
    from _arviz import from_draws
    from _diagnostics import explain
    from _quiet import quiet_known_noise

LOC = np.array([-2.0, 0.0, 3.2, 2.5])
SCALE = np.array([1.2, 1.0, 5.0, 2.8])
WEIGHTS = np.array([0.2, 0.3, 0.1, 0.4])
LOG_NORM = np.log(WEIGHTS) - np.log(SCALE) - 0.5 * np.log(2 * np.pi)


@numba.njit
def _component_logs(x):
    """log w_k N(x | loc_k, scale_k) for each component, and their maximum."""
    logs = LOG_NORM - 0.5 * ((x - LOC) / SCALE) ** 2
    return logs, logs.max()


@numba.njit
def mixture_logpdf(x):
    """log sum_k w_k N(x | loc_k, scale_k), by a stable log-sum-exp."""
    logs, m = _component_logs(x)
    return m + np.log(np.sum(np.exp(logs - m)))


@numba.njit
def mixture_dlogpdf(x):
    """d/dx of ``mixture_logpdf``: the responsibility-weighted component scores."""
    logs, m = _component_logs(x)
    p = np.exp(logs - m)
    return -np.sum(p * (x - LOC) / SCALE**2) / np.sum(p)


logdensity = numba_to_jax(
    mixture_logpdf, jax.ShapeDtypeStruct((), jnp.float64), grad=mixture_dlogpdf
)


def _blackjax_chain(key: jax.Array, draws: int, warmup: int) -> tuple[jax.Array, jax.Array]:
    warm_key, sample_key = jax.random.split(key)
    adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (state, params), _ = adapt.run(warm_key, jnp.array(0.0), num_steps=warmup)
    kernel = blackjax.nuts(logdensity, **params).step

    @jax.jit
    def run(state, key):
        def step(state, key):
            state, info = kernel(key, state)
            return state, (state.position, info.is_divergent)

        return jax.lax.scan(step, state, jax.random.split(key, draws))[1]

    return run(state, sample_key)


def sample_blackjax(
    key: jax.Array, draws: int, warmup: int, chains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws and divergence flags, each of shape ``(chains, draws)``."""
    runs = [_blackjax_chain(k, draws, warmup) for k in jax.random.split(key, chains)]
    return np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])


def sample_numpyro(
    key: jax.Array, draws: int, warmup: int, chains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws and divergence flags, each of shape ``(chains, draws)``."""
    mcmc = MCMC(
        NUTS(potential_fn=lambda x: -logdensity(x)),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="vectorized",  # one compilation; the chains share one CPU device
        progress_bar=False,
    )
    mcmc.run(key, init_params=jnp.zeros(chains), extra_fields=("diverging",))
    diverging = mcmc.get_extra_fields(group_by_chain=True)["diverging"]
    return np.asarray(mcmc.get_samples(group_by_chain=True)), np.asarray(diverging)


def true_density(x: np.ndarray) -> np.ndarray:
    z = (x[:, None] - LOC) / SCALE
    return np.sum(WEIGHTS * np.exp(-0.5 * z * z) / (SCALE * np.sqrt(2 * np.pi)), axis=1)


def true_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    return np.sum(WEIGHTS * norm.cdf((x[:, None] - LOC) / SCALE), axis=1)


def main(args: argparse.Namespace) -> None:
    quiet_known_noise()
    key_bj, key_np = jax.random.split(jax.random.key(args.seed))
    results = {}
    for name, sampler, key in [
        ("BlackJAX NUTS", sample_blackjax, key_bj),
        ("NumPyro NUTS", sample_numpyro, key_np),
    ]:
        start = time.perf_counter()
        draws, diverging = sampler(key, args.draws, args.warmup, args.chains)
        seconds = time.perf_counter() - start
        print(f"{name}: {args.chains} x {args.draws} draws in {seconds:.1f} s (with compile)")
        idata = from_draws({"x": draws}, {"diverging": diverging})
        print(explain(idata, name))
        results[name] = draws.ravel()

    true_mean = float(WEIGHTS @ LOC)
    true_sd = float(np.sqrt(WEIGHTS @ (SCALE**2 + LOC**2) - true_mean**2))
    print(f"{'':14s} {'mean':>7s} {'sd':>7s} {'KS dist':>8s}")
    print(f"{'true mixture':14s} {true_mean:7.3f} {true_sd:7.3f} {'':>8s}")
    for name, draws in results.items():
        xs = np.sort(draws)
        ks = np.max(np.abs(np.arange(1, len(xs) + 1) / len(xs) - true_cdf(xs)))
        print(f"{name:14s} {xs.mean():7.3f} {xs.std():7.3f} {ks:8.3f}")

    grid = np.linspace(-10, 14, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, draws in results.items():
        ax.hist(draws, bins=60, range=(-10, 14), density=True, histtype="step", label=name)
    ax.plot(grid, true_density(grid), "k", lw=2, label="true mixture")
    ax.set(
        xlabel="x",
        ylabel="density",
        title="Numba logdensity via XLA FFI: BlackJAX and NumPyro NUTS against the truth",
    )
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "numba_mixture.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"plot: {path}")


if __name__ == "__main__":
    main(ARGS)
