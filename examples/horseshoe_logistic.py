"""Horseshoe logistic regression: prior predictive, BlackJAX posterior, posterior predictive.

The model of the issue "Improve the interface to JAX-compiled functions" (Aesara)::

    tau ~ HalfCauchy(0, 1)
    lambda_j ~ HalfCauchy(0, 1)            for each feature j
    beta_j ~ Normal(0, tau * lambda_j)
    Y_i ~ Bernoulli(sigmoid(X_i . beta))

The issue writes ``sigmoid(-eta)``; this example keeps PyMC's usual sign,
``p = sigmoid(X . beta)`` (``logit_p=X @ beta``), so a positive coefficient raises P(Y = 1).

``pm.HalfCauchy`` draws ``|Cauchy|`` and so already has a JAX sampler; the raw
``pt.random.halfcauchy`` the issue uses has none in pytensor 2.38, and importing
``pymc_jaxops`` registers one.

Everything runs through ``pymc_jaxops.model_to_jax``: 1000 prior draws are one ``jax.vmap`` over
keys, the posterior comes from ``sample_blackjax_nuts``, and the posterior predictive is a
``jax.vmap`` over (key, posterior draw) pairs. Plots are written as PNG files to
``examples/out/``, or to ``--out DIR``.

Run with ``python examples/horseshoe_logistic.py [--out DIR]`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    out = Path(__file__).parent / "out"
    parser.add_argument(
        "--out", type=Path, default=out, help="folder for the PNG plots (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the data, the prior and posterior predictive draws and the sampler "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--draws", type=int, default=500, help="draws kept per chain (default: %(default)s)"
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=500,
        help="warm-up steps per chain, then discarded (default: %(default)s)",
    )
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default: %(default)s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # before the heavy imports below: --help answers at once

import arviz as az
import jax
import matplotlib
import numpy as np
import pymc as pm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pymc_jaxops import model_to_jax, sample_blackjax_nuts

try:
    from examples._arviz import forest_figure
    from examples._diagnostics import explain
    from examples._quiet import quiet_known_noise
except ImportError:  # run as a script: examples/ itself is on sys.path
    from _arviz import forest_figure
    from _diagnostics import explain
    from _quiet import quiet_known_noise


def simulate(seed: int, n_obs: int = 150, n_features: int = 10) -> tuple[np.ndarray, ...]:
    """Sparse truth: three non-zero coefficients among ``n_features``."""
    rng = np.random.default_rng(seed)
    beta = np.zeros(n_features)
    beta[:3] = [3.0, -2.0, 1.5]
    x = rng.normal(size=(n_obs, n_features))
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(x @ beta))))
    return x, y, beta


def horseshoe_logistic(x: np.ndarray, y: np.ndarray) -> pm.Model:
    coords = {"obs": np.arange(len(y)), "feature": [f"x{j}" for j in range(x.shape[1])]}
    with pm.Model(coords=coords) as model:
        tau = pm.HalfCauchy("tau", 1.0)
        lam = pm.HalfCauchy("lambda", 1.0, dims="feature")
        beta = pm.Normal("beta", 0.0, tau * lam, dims="feature")
        # PyMC's sign: P(Y = 1) = sigmoid(X . beta); the sigmoid(-eta) flips beta.
        pm.Bernoulli("y", logit_p=x @ beta, observed=y, dims="obs")
    return model


def _share_bins(shares: np.ndarray, n: int) -> np.ndarray:
    # Shares of n binary outcomes are multiples of 1/n: one bin per attainable value.
    counts = np.round(shares * n)
    return (np.arange(counts.min(), counts.max() + 2) - 0.5) / n


def main(args: argparse.Namespace) -> None:
    quiet_known_noise()
    args.out.mkdir(parents=True, exist_ok=True)

    x, y, beta_true = simulate(args.seed)
    model = horseshoe_logistic(x, y)
    jm = model_to_jax(model)
    key = jax.random.key(args.seed)
    prior_key, ppc_key = jax.random.split(key)

    # Prior predictive: one vmap over 1000 keys.
    prior = jax.vmap(jm.sample_prior)(jax.random.split(prior_key, 1000))
    prior_rate = np.asarray(prior["y"]).mean(axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].hist(prior_rate, bins=_share_bins(prior_rate, len(y)), color="C0")
    axes[0].axvline(y.mean(), color="k", ls="--", label="observed")
    axes[0].set(xlabel="fraction of Y = 1 in a prior draw", ylabel="prior draws")
    axes[0].legend()
    axes[1].hist(np.log10(np.abs(np.asarray(prior["beta"]).ravel())), bins=60, color="C1")
    axes[1].set(xlabel="log10 |beta_j| (prior)", ylabel="count")
    fig.suptitle("Horseshoe prior predictive (1000 draws, jax.vmap over keys)")
    fig.tight_layout()
    fig.savefig(args.out / "horseshoe_prior_predictive.png", dpi=100)
    plt.close(fig)

    # Posterior with BlackJAX NUTS. The centred horseshoe is a funnel: a high target acceptance
    # helps, yet some divergences remain (a non-centred beta would remove most of them, but
    # this is the model).
    idata = sample_blackjax_nuts(
        model,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        target_accept=0.95,
        random_seed=args.seed,
    )
    print(az.summary(idata, var_names=["tau", "beta"], round_to=2).to_string())
    print(explain(idata, "BlackJAX NUTS"))

    fig, ax, rows = forest_figure(idata, "beta", prob=0.9, figsize=(8, 4.5))
    ax.scatter(beta_true, rows, marker="x", color="C3", zorder=3, label="truth")
    ax.legend(loc="lower right")
    ax.set_title("BlackJAX NUTS: beta, 90% HDI, against the simulated truth")
    fig.tight_layout()
    fig.savefig(args.out / "horseshoe_posterior_beta.png", dpi=100)
    plt.close(fig)

    # Posterior predictive: vmap over (key, posterior draw) pairs of constrained values.
    posterior = {
        name: np.asarray(idata.posterior[name]).reshape(-1, *idata.posterior[name].shape[2:])
        for name in ("tau", "lambda", "beta")
    }
    n_draws = len(posterior["tau"])
    ppc = jax.vmap(jm.sample_posterior_predictive)(jax.random.split(ppc_key, n_draws), posterior)
    y_rep = np.asarray(ppc["y"])
    p_hat = y_rep.mean(axis=0)
    accuracy = (y_rep == y).mean(axis=1)
    print(f"posterior predictive accuracy: {accuracy.mean():.3f} (sd {accuracy.std():.3f})")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    order = np.argsort(p_hat)
    axes[0].plot(p_hat[order], color="C0", label="posterior predictive P(Y=1)")
    axes[0].scatter(np.arange(len(y)), y[order], s=8, color="k", label="observed Y")
    axes[0].set(xlabel="observation (sorted)", ylabel="Y")
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, 0.9))  # below the Y = 1 row
    axes[1].hist(accuracy, bins=_share_bins(accuracy, len(y)), color="C2")
    axes[1].set(xlabel="share of replicated Y equal to observed Y", ylabel="posterior draws")
    fig.suptitle("Horseshoe posterior predictive (from the BlackJAX NUTS draws)")
    fig.tight_layout()
    fig.savefig(args.out / "horseshoe_posterior_predictive.png", dpi=100)
    plt.close(fig)
    print(f"plots written to {args.out}")


if __name__ == "__main__":
    main(ARGS)
