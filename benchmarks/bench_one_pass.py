"""Per-call logp + gradient when a PyMC likelihood consumes a wrapped JAX function's output.

Four models, each six ways, side by side in one process:

- ``pymc_jaxops``: ``model.logp_dlogp_function()`` on PyMC's default backend (C VM) with
  the JAX function wrapped by ``@as_pytensor_op``: the whole graph runs as one XLA call
  (``pymc_jaxops._absorb``, on by default);
- ``pymc_jaxops, absorption off``: the same with the rewrite tag ``"pymc_jaxops_absorb"``
  excluded: our Ops in the C VM among PyMC's C thunks;
- ``pytensor.wrap_jax``: the same model with PyTensor's own wrapper (a forward call and a
  separate VJP call, which runs the forward pass again);
- pure JAX: ``jax.jit(jax.value_and_grad(...))`` of PyMC's own JAX logp of the model, its
  point already a JAX array (the limit the targets are set against), and the same call
  taking a NumPy array and returning NumPy copies, as PyMC's own samplers need;
- ``pymc_jaxops``, JAX mode: the same ``logp_dlogp_function`` compiled with ``mode="JAX"``.

After the per-call table, each case prints the seconds from ``logp_dlogp_function()`` to the
end of its first call (compilation), with the absorption on and off, absorbed again with
its XLA executable on disk (a later session, a chain process), and the same for
``pytensor.wrap_jax`` and the pure-JAX ``jax.jit(jax.value_and_grad(...))`` with NumPy in
and out: the best of ``--firsts`` (3) for each, interleaved.

Models: (a) a Lotka-Volterra ODE solved by diffrax (Tsit5, adaptive steps) whose
trajectory is the mean of a ``pm.Normal``; (b) an MLP whose output is the mean of a
``pm.Normal`` (a Bayesian neural network's likelihood); (c) a dynamax HMM filter
(``lax.scan``) as a ``pm.Potential``; (d) the seed HMM (``examples/marginal_hmm.py``).

Needs the ``bench`` extra (diffrax, dynamax). Run:
``python benchmarks/bench_one_pass.py [--calls N] [--rounds R] [--firsts F] [--only a b c d]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
from dynamax.hidden_markov_model.inference import hmm_filter
from pytensor.compile.mode import get_default_mode

from benchmarks._common import banner, per_call_us, pure_jax_value_and_grad, pymc_logp_dlogp
from examples.marginal_hmm import build_model, hmm_logp, simulate
from pymc_jaxops import _caches, as_pytensor_op
from pymc_jaxops._absorb import TAG

SEED = 20261125
ABSORPTION_OFF = get_default_mode().excluding(TAG)

# (a) Lotka-Volterra ------------------------------------------------------------------------

T_OBS = np.linspace(0.0, 15.0, 40)
Y0 = np.array([10.0, 5.0])


def lotka_volterra(theta, y0, t_obs):
    """Prey/predator trajectory at ``t_obs``, shape ``(len(t_obs), 2)``."""

    def field(t, y, theta):
        alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
        prey, pred = y[0], y[1]
        return jnp.stack([alpha * prey - beta * prey * pred, delta * prey * pred - gamma * pred])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t_obs[-1],
        dt0=0.05,
        y0=y0,
        args=theta,
        saveat=diffrax.SaveAt(ts=t_obs),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
        max_steps=4096,
    )
    return sol.ys


def ode_model(fn: Callable) -> pm.Model:
    rng = np.random.default_rng(SEED)  # every contender gets the same data
    truth = np.array([1.0, 0.1, 1.5, 0.075])
    clean = np.asarray(lotka_volterra(jnp.asarray(truth), Y0, T_OBS))
    data = clean + rng.normal(0.0, 1.0, size=clean.shape)
    with pm.Model() as model:
        theta = pm.LogNormal("theta", np.log(truth), 0.1, size=4)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", mu=fn(theta, Y0, T_OBS), sigma=sigma, observed=data)
    return model


# (b) MLP -----------------------------------------------------------------------------------

N_OBS, N_IN, N_HIDDEN = 500, 8, 32
X = np.random.default_rng(SEED).normal(size=(N_OBS, N_IN))


def mlp(w1, b1, w2, b2, x):
    """A two-layer tanh network's output, shape ``(n_obs,)``."""
    return jnp.tanh(x @ w1 + b1) @ w2 + b2


def mlp_model(fn: Callable) -> pm.Model:
    rng = np.random.default_rng(SEED + 1)
    w1 = rng.normal(size=(N_IN, N_HIDDEN)) / np.sqrt(N_IN)
    w2 = rng.normal(size=N_HIDDEN) / np.sqrt(N_HIDDEN)
    data = np.tanh(X @ w1) @ w2 + 0.1 * rng.normal(size=N_OBS)
    with pm.Model() as model:
        w1_ = pm.Normal("w1", 0.0, 1.0, shape=(N_IN, N_HIDDEN))
        b1_ = pm.Normal("b1", 0.0, 1.0, shape=N_HIDDEN)
        w2_ = pm.Normal("w2", 0.0, 1.0, shape=N_HIDDEN)
        b2_ = pm.Normal("b2", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", mu=fn(w1_, b1_, w2_, b2_, X), sigma=sigma, observed=data)
    return model


# (c) dynamax HMM as a Potential -------------------------------------------------------------

HMM_STEPS, HMM_STATES = 300, 4


def dynamax_hmm(log_init, log_trans, means, noise, emissions):
    """Marginal log-likelihood of one Gaussian-emission HMM sequence (dynamax's filter)."""
    lls = jax.scipy.stats.norm.logpdf(emissions[:, None], means, noise)
    post = hmm_filter(jnp.exp(log_init), jnp.exp(log_trans), lls)
    return post.marginal_loglik


def dynamax_model(fn: Callable) -> pm.Model:
    rng = np.random.default_rng(SEED + 2)
    states = rng.integers(HMM_STATES, size=HMM_STEPS)
    emissions = rng.normal(states.astype(float), 0.3)
    with pm.Model() as model:
        p_init = pm.Dirichlet("p_init", np.ones(HMM_STATES))
        p_trans = pm.Dirichlet("p_trans", np.ones(HMM_STATES), shape=(HMM_STATES, HMM_STATES))
        means = pm.Normal("means", np.arange(HMM_STATES, dtype=float), 1.0, size=HMM_STATES)
        noise = pm.HalfNormal("noise", 1.0)
        pm.Potential("hmm", fn(pm.math.log(p_init), pm.math.log(p_trans), means, noise, emissions))
    return model


# -------------------------------------------------------------------------------------------


CASES = {
    "a": ("ODE (diffrax Lotka-Volterra, 40x2) -> pm.Normal", lotka_volterra, ode_model),
    "b": (f"MLP ({N_IN}-{N_HIDDEN}-1, {N_OBS} rows) -> pm.Normal", mlp, mlp_model),
    "c": (f"dynamax HMM ({HMM_STEPS} steps) as Potential", dynamax_hmm, dynamax_model),
    "d": ("seed HMM (70x50) as Potential", hmm_logp, lambda fn: build_model(simulate(), fn)),
}


def run_case(key: str, calls: int, rounds: int, firsts: int = 3) -> dict[str, float]:
    title, jax_fn, make = CASES[key]
    ours = make(as_pytensor_op(jax_fn))
    theirs = make(pytensor.wrap_jax(jax_fn))
    fns = {
        "pymc_jaxops": pymc_logp_dlogp(ours),
        "pymc_jaxops, absorption off": pymc_logp_dlogp(ours, mode=ABSORPTION_OFF),
        "pymc_jaxops, JAX mode": pymc_logp_dlogp(ours, mode="JAX"),
        "pytensor.wrap_jax": pymc_logp_dlogp(theirs),
        "pure JAX, NumPy in and out": pure_jax_value_and_grad(ours, numpy_io=True),
        "pure JAX value_and_grad": pure_jax_value_and_grad(ours),
    }
    results = {name: f() for name, f in fns.items()}
    ref_v, ref_g = (np.asarray(r) for r in results["pure JAX value_and_grad"])
    for name, (v, g) in results.items():
        # Same model, same point: every contender must agree before it is timed.
        np.testing.assert_allclose(np.asarray(v), ref_v, rtol=1e-8, err_msg=name)
        np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-6, atol=1e-8, err_msg=name)
    us = per_call_us(fns, calls, rounds)
    limit, upstream = us["pure JAX value_and_grad"], us["pytensor.wrap_jax"]
    numpy_limit = us["pure JAX, NumPy in and out"]
    print(f"\n({key}) {title}")
    head = f"{'us/call':>10s} {'x pure JAX':>11s} {'x wrap_jax':>11s} {'x pure, NumPy io':>17s}"
    print(f"{'':28s} {head}")
    for name, t in us.items():
        ratios = f"{t / limit:11.2f} {t / upstream:11.2f} {t / numpy_limit:17.2f}"
        print(f"{name:28s} {t:10.1f} {ratios}")
    # Each contender's best of ``firsts`` (one first call varies by ±30% on a small VM),
    # the contenders interleaved.
    first = {
        "pure": lambda: _first_call_s(
            make(as_pytensor_op(jax_fn)), pure_jax_value_and_grad, numpy_io=True
        ),
        "off": lambda: _first_call_s(
            make(as_pytensor_op(jax_fn)), pymc_logp_dlogp, mode=ABSORPTION_OFF
        ),
        "on": lambda: _first_call_s(make(as_pytensor_op(jax_fn)), pymc_logp_dlogp),
        # A later session, or a chain process: the executables compiled just before are
        # on disk.
        "again": lambda: _first_call_s(
            make(as_pytensor_op(jax_fn)), pymc_logp_dlogp, keep=(ON_DISK,)
        ),
        "wrap_jax": lambda: _first_call_s(make(pytensor.wrap_jax(jax_fn)), pymc_logp_dlogp),
    }
    best = dict.fromkeys(first, float("inf"))
    for _ in range(firsts):
        for name, measure in first.items():
            best[name] = min(best[name], measure())
    pure, off, on, again, upstream_first = best.values()
    print(
        f"first call (compile + run): absorbed {on:.2f} s ({on / pure:.2f}x pure JAX, "
        f"{on / upstream_first:.2f}x wrap_jax), absorbed with its executable on disk "
        f"{again:.2f} s ({again / pure:.2f}x pure JAX, {again / upstream_first:.2f}x "
        f"wrap_jax), absorption off {off:.2f} s ({off / pure:.2f}x), wrap_jax "
        f"{upstream_first:.2f} s, pure JAX {pure:.2f} s"
    )
    return us


ON_DISK = "XLA executables on disk"


def _first_call_s(model, make_fn: Callable, keep=(), **kwargs) -> float:
    """Seconds from building ``model``'s logp+dlogp function to the end of its first call."""
    # Ours and JAX's: every contender compiles its JAX programs anew (unless ``keep`` keeps
    # our executables on disk). PyTensor's C modules stay on disk, as in a new session.
    _caches.clear_all(keep=keep)
    jax.clear_caches()
    # A full garbage collection takes 0.5 s in a process this size; where one falls is
    # luck, so every contender starts with none pending.
    gc.collect()
    t0 = time.perf_counter()
    make_fn(model, **kwargs)()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short rounds: on a small VM the best of 60 rounds of 20 calls varied less
    # between runs than the best of 7 rounds of 100.
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--firsts", type=int, default=3, help="first calls per contender")
    args = parser.parse_args(argv)
    banner("logp+grad per call, JAX function output consumed by PyMC")
    for key in args.only:
        run_case(key, args.calls, args.rounds, args.firsts)


if __name__ == "__main__":
    main()
