"""Hierarchical radon model (varying intercepts and slopes) with a JAX likelihood.

Seed: the PyMC notebook "Using JAX for faster sampling": log radon of 919 houses in 85
Minnesota counties, a county intercept and a county floor effect with partial pooling,
HalfCauchy noise; PyMC's C NUTS took 180 s there and JAX NUTS 24 s (2 chains, tune=2000,
draws=2000, target_accept=0.9). Here the Normal likelihood is written in JAX and wrapped
with ``@as_pytensor_op`` (``--likelihood pymc`` gives the notebook's model unchanged), so
the same model runs on PyMC NUTS, NumPyro and nutpie.

Without ``--data`` the script simulates radon-like data of the same shape; ``--data`` reads
the notebook's CSV (columns ``county``, ``floor``, ``log_radon``).

Run: ``python examples/radon.py [--data radon.csv] [--out DIR] [--sampler numpyro]``.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        metavar="CSV",
        help="the notebook's radon.csv, with columns county, floor and log_radon "
        "(default: simulate radon-like data of the same shape)",
    )
    out = Path(__file__).parent / "out"
    parser.add_argument(
        "--out", type=Path, default=out, help="folder for the PNG plots (default: %(default)s)"
    )
    parser.add_argument(
        "--sampler",
        default="numpyro",
        choices=["pymc", "numpyro", "nutpie"],
        help="NUTS implementation pm.sample runs: PyMC's own, NumPyro's or nutpie's "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--likelihood",
        default="jax",
        choices=["jax", "pymc"],
        help="jax: the Normal likelihood as a wrapped JAX function (pm.Potential); pymc: the "
        "notebook's pm.Normal(..., observed=...) (default: %(default)s)",
    )
    parser.add_argument(
        "--draws", type=int, default=1000, help="draws kept per chain (default: %(default)s)"
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=1000,
        help="warm-up steps per chain, then discarded (default: %(default)s)",
    )
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains (default: %(default)s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # before the heavy imports below: --help answers at once

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm

from pymc_jaxops import as_pytensor_op

try:
    from examples._arviz import hdi, trace_figure
    from examples._diagnostics import explain
    from examples._quiet import quiet_known_noise
except ImportError:  # run as a script: examples/ itself is on sys.path
    from _arviz import hdi, trace_figure
    from _diagnostics import explain
    from _quiet import quiet_known_noise

RANDOM_SEED = 8924
N_COUNTIES = 85
N_HOUSES = 919
# Simulation truth, close to the posterior on the real data.
TRUE = {"mu_alpha": 1.5, "sigma_alpha": 0.35, "mu_beta": -0.65, "sigma_beta": 0.3, "eps": 0.75}


@dataclass(frozen=True)
class RadonData:
    """Observations: county index (0..n_counties-1), floor (0 basement, 1 first floor)."""

    county_idx: np.ndarray
    floor: np.ndarray
    log_radon: np.ndarray
    counties: tuple[str, ...]
    # The county intercepts and slopes that generated simulated data; None for real data.
    true_alpha: np.ndarray | None = None
    true_beta: np.ndarray | None = None


def simulate(seed: int = RANDOM_SEED) -> RadonData:
    """Radon-like data: 919 houses in 85 counties of uneven size, ~17% on the first floor."""
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(N_COUNTIES, 0.8))
    county_idx = np.sort(rng.choice(N_COUNTIES, size=N_HOUSES, p=sizes))
    # Every county keeps at least one house, as in the survey.
    county_idx[:N_COUNTIES] = np.arange(N_COUNTIES)
    floor = (rng.random(N_HOUSES) < 0.17).astype(float)
    alpha = rng.normal(TRUE["mu_alpha"], TRUE["sigma_alpha"], N_COUNTIES)
    beta = rng.normal(TRUE["mu_beta"], TRUE["sigma_beta"], N_COUNTIES)
    mu = alpha[county_idx] + beta[county_idx] * floor
    log_radon = rng.normal(mu, TRUE["eps"])
    counties = tuple(f"county_{k:02d}" for k in range(N_COUNTIES))
    return RadonData(county_idx, floor, log_radon, counties, alpha, beta)


def load(path: Path) -> RadonData:
    """The notebook's CSV: one row per house, columns ``county``, ``floor``, ``log_radon``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"county", "floor", "log_radon"} - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"radon.load({str(path)!r}): columns {sorted(missing)} are missing.")
    counties = tuple(sorted({r["county"].strip() for r in rows}))
    index = {c: k for k, c in enumerate(counties)}
    return RadonData(
        county_idx=np.array([index[r["county"].strip()] for r in rows]),
        floor=np.array([float(r["floor"]) for r in rows]),
        log_radon=np.array([float(r["log_radon"]) for r in rows]),
        counties=counties,
    )


@as_pytensor_op
def radon_loglik(log_radon, county_idx, floor, alpha, beta, eps):
    """Normal log-likelihood of every house given its county's intercept and slope."""
    mu = alpha[county_idx] + beta[county_idx] * floor
    return jnp.sum(jax.scipy.stats.norm.logpdf(log_radon, mu, eps))


def build_model(data: RadonData, likelihood: str = "jax") -> pm.Model:
    """The notebook's varying-intercept-and-slope model.

    ``likelihood="jax"`` adds the likelihood as a ``pm.Potential`` computed by the wrapped
    JAX function; ``"pymc"`` uses ``pm.Normal(..., observed=...)`` as the notebook does.
    """
    if likelihood not in ("jax", "pymc"):
        raise ValueError(
            f"radon.build_model: likelihood must be 'jax' or 'pymc', not {likelihood!r}."
        )
    coords = {"county": list(data.counties), "obs_id": np.arange(len(data.log_radon))}
    with pm.Model(coords=coords) as model:
        county_idx = pm.Data("county_idx", data.county_idx, dims="obs_id")
        floor = pm.Data("floor", data.floor, dims="obs_id")
        mu_a = pm.Normal("mu_alpha", mu=0.0, sigma=10)
        sigma_a = pm.HalfNormal("sigma_alpha", 5.0)
        mu_b = pm.Normal("mu_beta", mu=0.0, sigma=10)
        sigma_b = pm.HalfNormal("sigma_beta", 5.0)
        alpha = pm.Normal("alpha", mu=mu_a, sigma=sigma_a, dims="county")
        beta = pm.Normal("beta", mu=mu_b, sigma=sigma_b, dims="county")
        eps = pm.HalfCauchy("eps", 5.0)
        if likelihood == "jax":
            pm.Potential(
                "radon_like", radon_loglik(data.log_radon, county_idx, floor, alpha, beta, eps)
            )
        else:
            mu = alpha[county_idx] + beta[county_idx] * floor
            pm.Normal("radon_like", mu=mu, sigma=eps, observed=data.log_radon, dims="obs_id")
    return model


SAMPLER_NAMES = {"pymc": "PyMC NUTS", "numpyro": "NumPyro NUTS", "nutpie": "nutpie NUTS"}


def plot_county_intercepts(idata, data: RadonData, sampler: str):
    """County intercepts against the number of houses measured in the county.

    85 labelled rows do not fit a page; this shows the point of partial pooling instead:
    counties with few houses are pulled toward the state mean and have wide intervals.
    """
    import matplotlib.pyplot as plt

    alpha = idata.posterior["alpha"]
    mean = alpha.mean(("chain", "draw")).values
    interval = hdi(idata, "alpha", prob=0.9)
    n_houses = np.bincount(data.county_idx, minlength=len(data.counties))
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(n_houses))
    x = n_houses * np.exp(jitter)  # spreads counties of equal size apart on the log axis

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.errorbar(
        x,
        mean,
        yerr=[mean - interval[:, 0], interval[:, 1] - mean],
        fmt="o",
        ms=4,
        color="C0",
        ecolor="C0",
        alpha=0.7,
        label="posterior mean, 90% HDI",
    )
    if data.true_alpha is not None:
        ax.scatter(x, data.true_alpha, marker="x", color="C3", zorder=3, label="simulated truth")
    mu = float(idata.posterior["mu_alpha"].mean())
    ax.axhline(mu, color="k", ls="--", lw=1, label=f"state mean mu_alpha = {mu:.2f}")
    ax.set_xscale("log")
    ax.set(
        xlabel="houses measured in the county (log scale)",
        ylabel="county intercept alpha (log radon, basement)",
        title=f"{sampler}: {len(n_houses)} county intercepts shrink toward the state mean",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def main(args: argparse.Namespace) -> None:
    quiet_known_noise()
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    sampler = SAMPLER_NAMES[args.sampler]
    data = load(args.data) if args.data else simulate()
    with build_model(data, args.likelihood):
        idata = pm.sample(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            target_accept=0.9,
            nuts_sampler=args.sampler,
            random_seed=RANDOM_SEED,
            progressbar=False,
        )
    var_names = ["mu_alpha", "sigma_alpha", "mu_beta", "sigma_beta", "eps"]
    print(az.summary(idata, var_names=var_names).to_string())
    print(explain(idata, sampler))
    truth = None if args.data else TRUE
    if truth:
        print("truth:", truth)
    fig = trace_figure(idata, var_names, truth or {}, figsize=(10, 9))
    title = f"{sampler}: radon hyperparameters"
    fig.suptitle(title + (" (grey lines: simulated truth)" if truth else ""))
    fig.tight_layout()
    fig.savefig(args.out / "radon_trace.png", dpi=80)
    plt.close("all")
    fig = plot_county_intercepts(idata, data, sampler)
    fig.savefig(args.out / "radon_county_intercepts.png", dpi=90)
    plt.close("all")
    print(f"Plots saved to {args.out}")


if __name__ == "__main__":
    main(ARGS)
