"""pm.sample(nuts_sampler="numpyro") on 2 chains in a fresh process: parallel, no warning."""

import warnings

import jax
import pymc as pm
from scaleout_model import build_model, report  # imports pymc_jaxops: one device per core

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    idata = pm.sample(
        model=build_model(),
        nuts_sampler="numpyro",
        chains=2,
        draws=300,
        tune=300,
        random_seed=1,
        progressbar=False,
        compute_convergence_checks=False,
    )
print("DEVICES", jax.local_device_count(), flush=True)
for w in caught:
    print("WARNING", str(w.message).replace("\n", " "), flush=True)
report(idata)
