"""A likelihood that is -inf or NaN in parts of the space: samplers diverge there and go on."""

import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest

from pymc_jaxops import as_pytensor_op

DATA = np.random.default_rng(0).normal(0.8, 1.0, size=50)


@as_pytensor_op
def walled_logp(data, mu):
    logp = jnp.sum(-0.5 * (data - mu) ** 2)
    # -inf beyond a wall at 1.2, NaN below -1: both regions have posterior mass nearby.
    return jnp.where(mu > 1.2, -jnp.inf, jnp.where(mu < -1.0, jnp.nan, logp))


def _model():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 3, initval=0.5)
        pm.Potential("lik", walled_logp(DATA, mu))
    return model


def _check(idata):
    mu = idata.posterior["mu"].values
    assert np.all(np.isfinite(mu))
    assert mu.max() <= 1.2 and mu.min() >= -1.0
    # The wall sits ~3 sd above the mean of the posterior: NUTS must keep bumping into it.
    assert int(idata.sample_stats["diverging"].sum()) > 0
    assert abs(float(mu.mean()) - DATA.mean()) < 0.1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pymc_nuts_reports_divergences_and_keeps_sampling():
    with _model():
        idata = pm.sample(
            400, tune=300, chains=1, random_seed=2, progressbar=False, nuts_sampler="pymc"
        )
    _check(idata)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_numpyro_reports_divergences_and_keeps_sampling():
    with _model():
        idata = pm.sample(
            400, tune=300, chains=1, nuts_sampler="numpyro", random_seed=2, progressbar=False
        )
    _check(idata)
