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

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from pymc_jaxops.bridge import numba_to_jax  # noqa: E402

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


def sample_blackjax(key: jax.Array, draws: int, warmup: int) -> np.ndarray:
    warm_key, sample_key = jax.random.split(key)
    adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (state, params), _ = adapt.run(warm_key, jnp.array(0.0), num_steps=warmup)
    kernel = blackjax.nuts(logdensity, **params).step

    @jax.jit
    def run(state, key):
        def step(state, key):
            state, _ = kernel(key, state)
            return state, state.position

        return jax.lax.scan(step, state, jax.random.split(key, draws))[1]

    return np.asarray(run(state, sample_key))


def sample_numpyro(key: jax.Array, draws: int, warmup: int) -> np.ndarray:
    mcmc = MCMC(
        NUTS(potential_fn=lambda x: -logdensity(x)),
        num_warmup=warmup,
        num_samples=draws,
        progress_bar=False,
    )
    mcmc.run(key, init_params=jnp.array(0.0))
    return np.asarray(mcmc.get_samples())


def true_density(x: np.ndarray) -> np.ndarray:
    z = (x[:, None] - LOC) / SCALE
    return np.sum(WEIGHTS * np.exp(-0.5 * z * z) / (SCALE * np.sqrt(2 * np.pi)), axis=1)


def true_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    return np.sum(WEIGHTS * norm.cdf((x[:, None] - LOC) / SCALE), axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent, help="plot directory")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    key_bj, key_np = jax.random.split(jax.random.key(args.seed))
    results = {}
    for name, sampler, key in [
        ("BlackJAX NUTS", sample_blackjax, key_bj),
        ("NumPyro NUTS", sample_numpyro, key_np),
    ]:
        start = time.perf_counter()
        results[name] = sampler(key, args.draws, args.warmup)
        print(f"{name}: {args.draws} draws in {time.perf_counter() - start:.1f} s (with compile)")

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
    ax.set(xlabel="x", ylabel="density", title="Numba logdensity via XLA FFI: NUTS draws")
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "numba_mixture.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
