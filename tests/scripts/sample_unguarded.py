"""A user's script without a main guard: one PyMC entry point that starts processes.

Run as ``python sample_unguarded.py ENTRY`` (or fed on stdin / through ``-c``) with ENTRY one
of ``nuts``, ``smc``, ``demetropolis``, ``demetropolisz``, ``ppc`` (PyMC's own samplers and
chain processes), or ``default`` (``pm.sample()`` as it comes: nutpie on pymc 6 when it is
installed, PyMC's NUTS on pymc 5). ``START_METHOD=forkserver`` in the environment makes
that multiprocessing's default first, as Python 3.14 does on Linux. JAX runs in this process
before sampling starts (as in any notebook). The JAX likelihood and a ``CustomDist`` logp
lambda are defined here, in ``__main__``. Prints one JSON line of posterior means.
"""

import json
import multiprocessing
import os
import sys

import jax.numpy as jnp
import numpy as np
import pymc as pm

from pymc_jaxops import as_pytensor_op

TRUE_MU, TRUE_SIGMA = 1.5, 0.5
entry = sys.argv[1]
if os.environ.get("START_METHOD"):
    multiprocessing.set_start_method(os.environ["START_METHOD"])


@as_pytensor_op
def normal_logpdf(y, mu, sigma):
    return -0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi)


y = np.random.default_rng(1).normal(TRUE_MU, TRUE_SIGMA, 200)
with pm.Model() as model:
    mu = pm.Normal("mu", 0, 10)
    sigma = pm.HalfNormal("sigma", 2)
    pm.CustomDist(
        "y",
        mu,
        sigma,
        logp=lambda value, m, s: normal_logpdf(value, m, s),
        random=lambda m, s, rng=None, size=None: rng.normal(m, s, size),
        observed=y,
    )

# JAX's runtime is live from here on: forking it would hang.
model.compile_logp()(model.initial_point())

kw = dict(random_seed=2, progressbar=False, compute_convergence_checks=False)
with model:
    if entry in ("nuts", "ppc"):
        idata = pm.sample(draws=200, tune=200, chains=2, cores=2, nuts_sampler="pymc", **kw)
    elif entry == "default":
        idata = pm.sample(draws=200, tune=200, chains=2, cores=2, **kw)
    elif entry == "smc":
        idata = pm.sample_smc(draws=300, chains=2, cores=2, **kw)
    elif entry in ("demetropolis", "demetropolisz"):
        step = pm.DEMetropolis() if entry == "demetropolis" else pm.DEMetropolisZ()
        idata = pm.sample(draws=400, tune=400, chains=4, cores=2, step=step, **kw)
    else:
        raise SystemExit(f"unknown entry point {entry!r}")
    result = {name: float(idata.posterior[name].mean()) for name in ("mu", "sigma")}
    if entry == "ppc":
        ppc = pm.sample_posterior_predictive(idata, progressbar=False, random_seed=3)
        result["y_mean"] = float(ppc.posterior_predictive["y"].mean())
print("RESULT", json.dumps(result), flush=True)
