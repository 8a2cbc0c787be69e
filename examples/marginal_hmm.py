"""Marginal HMM: a JAX forward-algorithm likelihood inside a PyMC model.

Seed: the PyMC notebook "How to wrap a JAX function for use in PyMC". 70 sequences of 50
steps from a 3-state HMM whose state k emits Normal((k + 1) * signal, noise); the hidden
states are marginalised by the forward algorithm written in JAX (``lax.scan`` over time,
``vmap`` over sequences) and wrapped with ``@as_pytensor_op``.

Run: ``python examples/marginal_hmm.py [--out DIR] [--draws N] [--tune N]``.
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
        "--draws", type=int, default=500, help="draws kept per chain (default: %(default)s)"
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=500,
        help="warm-up steps per chain, then discarded (default: %(default)s)",
    )
    parser.add_argument(
        "--chains",
        type=int,
        default=2,
        help="chains per sampler; the model is sampled three times (default: %(default)s)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # before the heavy imports below: --help answers at once

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor.tensor as pt

from pymc_jaxops import as_pytensor_op

try:
    from examples._arviz import posterior_figure, trace_figure
    from examples._diagnostics import explain
    from examples._quiet import quiet_known_noise
except ImportError:  # run as a script: examples/ itself is on sys.path
    from _arviz import posterior_figure, trace_figure
    from _diagnostics import explain
    from _quiet import quiet_known_noise

RANDOM_SEED = 104109109
N_STATES = 3
TRUE_SIGNAL = 1.15
TRUE_NOISE = 0.15
P_INITIAL = np.array([0.9, 0.09, 0.01])
P_TRANSITION = np.array([[0.9, 0.09, 0.01], [0.1, 0.8, 0.1], [0.01, 0.09, 0.9]])


def simulate(n_sequences: int = 70, n_steps: int = 50, seed: int = RANDOM_SEED) -> np.ndarray:
    """Emissions, shape ``(n_sequences, n_steps)``, of the true HMM."""
    rng = np.random.default_rng(seed)
    states = np.empty((n_sequences, n_steps), dtype=int)
    states[:, 0] = rng.choice(N_STATES, size=n_sequences, p=P_INITIAL)
    for t in range(1, n_steps):
        cum = P_TRANSITION[states[:, t - 1]].cumsum(axis=1)
        states[:, t] = (rng.random((n_sequences, 1)) > cum).sum(axis=1)
    return rng.normal((states + 1) * TRUE_SIGNAL, TRUE_NOISE)


def sequence_logp(emissions, signal, noise, logp_init, logp_trans):
    """Log-likelihood of each sequence (forward algorithm), shape ``(n_sequences,)``."""
    means = (jnp.arange(logp_init.shape[0]) + 1.0) * signal

    def one(seq):
        emission_logp = jax.scipy.stats.norm.logpdf(seq[:, None], means, noise)

        def step(alpha, e):
            return jax.nn.logsumexp(alpha[:, None] + logp_trans, axis=0) + e, None

        alpha, _ = jax.lax.scan(step, logp_init + emission_logp[0], emission_logp[1:])
        return jax.nn.logsumexp(alpha)

    return jax.vmap(one)(emissions)


def hmm_logp(emissions, signal, noise, logp_init, logp_trans):
    """Total log-likelihood of all sequences."""
    return jnp.sum(sequence_logp(emissions, signal, noise, logp_init, logp_trans))


hmm_logp_op = as_pytensor_op(hmm_logp)
sequence_logp_op = as_pytensor_op(sequence_logp)


def priors():
    signal = pm.Normal("emission_signal", 0, 1)
    noise = pm.HalfNormal("emission_noise", 1)
    p_init = pm.Dirichlet("p_initial_state", np.ones(N_STATES))
    p_trans = pm.Dirichlet("p_transition", np.ones(N_STATES), shape=(N_STATES, N_STATES))
    return signal, noise, p_init, p_trans


def build_model(emissions: np.ndarray, logp_op=hmm_logp_op) -> pm.Model:
    """The notebook's model: the HMM likelihood as a ``pm.Potential``."""
    with pm.Model() as model:
        data = pm.Data("emissions", emissions)
        signal, noise, p_init, p_trans = priors()
        pm.Potential("hmm", logp_op(data, signal, noise, pt.log(p_init), pt.log(p_trans)))
    return model


def build_custom_dist_model(emissions: np.ndarray) -> pm.Model:
    """The same model as a ``pm.CustomDist`` with one log-likelihood per sequence (for LOO)."""

    # The support length `t` cannot be read off the HMM parameters, so the step index is
    # passed as a parameter of shape (t,) that only fixes the signature.
    # CustomDist hands the parameters over with a leading batch axis of length 1.
    def logp(value, signal, noise, p_init, p_trans, _steps):
        signal, noise, p_init, p_trans = (
            pt.squeeze(p, 0) for p in (signal, noise, p_init, p_trans)
        )
        return sequence_logp_op(value, signal, noise, pt.log(p_init), pt.log(p_trans))

    coords = {"sequence": range(emissions.shape[0]), "step": range(emissions.shape[1])}
    with pm.Model(coords=coords) as model:
        signal, noise, p_init, p_trans = priors()
        pm.CustomDist(
            "emissions",
            signal,
            noise,
            p_init,
            p_trans,
            np.arange(emissions.shape[1]),
            logp=logp,
            observed=emissions,
            signature="(),(),(s),(s,s),(t)->(t)",
            dims=("sequence", "step"),
        )
    return model


def main(args: argparse.Namespace) -> None:
    quiet_known_noise()
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)

    emissions = simulate()
    var_names = ["emission_signal", "emission_noise"]
    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=RANDOM_SEED)
    # nuts_sampler="pymc" by name: PyMC 6 picks nutpie whenever it is installed.
    with build_model(emissions):
        idata_pymc = pm.sample(nuts_sampler="pymc", **kw)
        idata_numpyro = pm.sample(nuts_sampler="numpyro", progressbar=False, **kw)
    truth = {"emission_signal": TRUE_SIGNAL, "emission_noise": TRUE_NOISE}
    for label, idata in [("PyMC NUTS", idata_pymc), ("NumPyro NUTS", idata_numpyro)]:
        print(f"\n{label} (truth: signal {TRUE_SIGNAL}, noise {TRUE_NOISE})")
        # Four decimals: the posterior sd is about 0.001.
        print(az.summary(idata, var_names=var_names, round_to=4).to_string())
        print(explain(idata, label))
        fig = trace_figure(idata, var_names, truth, figsize=(10, 5))
        fig.suptitle(f"{label}: HMM emission parameters (grey lines: simulated truth)")
        fig.tight_layout()
        fig.savefig(args.out / f"hmm_trace_{label.split()[0].lower()}.png", dpi=80)
        plt.close("all")
    # 4 significant figures: the posterior is so narrow that with 3 the signal's estimates
    # all print as 1.15.
    fig = posterior_figure(idata_pymc, var_names, truth, digits=4)
    fig.suptitle("PyMC NUTS posterior with the simulated truth (orange)", fontsize=16)
    fig.tight_layout()
    fig.savefig(args.out / "hmm_posterior.png", dpi=80)
    plt.close("all")

    with build_custom_dist_model(emissions):
        idata_loo = pm.sample(nuts_sampler="pymc", **kw)
        # Not idata_kwargs={"log_likelihood": True}: PyMC 6 deprecates it for this call.
        pm.compute_log_likelihood(idata_loo, progressbar=False)
    print("\nCustomDist variant, LOO over the 70 sequences:")
    loo = az.loo(idata_loo, pointwise=True)
    print(loo)
    good_k = float(getattr(loo, "good_k", 0.7))  # ArviZ's threshold for this many draws
    n_bad = int((loo.pareto_k > good_k).sum())
    print(
        f"Pareto k > {good_k:.2f} for {n_bad} of {loo.pareto_k.size} sequences: "
        + (
            "the LOO estimate can be trusted."
            if n_bad == 0
            else "LOO's shortcut is unreliable there; refit without those sequences "
            "(az.reloo) before comparing models on elpd_loo."
        )
    )
    print(explain(idata_loo, "PyMC NUTS (CustomDist)"))
    print(f"\nPlots saved to {args.out}")


if __name__ == "__main__":
    main(ARGS)
