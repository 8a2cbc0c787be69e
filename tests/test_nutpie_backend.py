"""pymc 6: pm.sample() runs nutpie's JAX backend for a model with a JAX likelihood."""

import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._nutpie_backend import steer
from pymc_jaxops._upstream.versions import at_least

pytestmark = pytest.mark.skipif(
    not at_least("pymc", 6), reason="pymc 5's pm.sample() does not run nutpie by default"
)

Y = np.random.default_rng(3).normal(1.5, 0.5, 100)


@as_pytensor_op
def normal_loglik(y, mu, sigma):
    return jnp.sum(-0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma))


def _model(wrapped: bool = True) -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 10)
        sigma = pm.HalfNormal("sigma", 2)
        if wrapped:  # the data in a pm.Data, as the seed HMM holds it
            pm.Potential("lik", normal_loglik(pm.Data("y", Y), mu, sigma))
        else:
            pm.Normal("y", mu, sigma, observed=Y)
    return model


@pytest.fixture
def backends(monkeypatch):
    """The backend each nutpie compile was asked for."""
    import nutpie

    seen = []
    compile_model = nutpie.compile_pymc_model

    def spy(model, **kwargs):
        seen.append(kwargs.get("backend"))
        return compile_model(model, **kwargs)

    monkeypatch.setattr(nutpie, "compile_pymc_model", spy)
    return seen


def _sample(model, **kwargs):
    with model:
        return pm.sample(draws=300, tune=300, chains=2, random_seed=1, progressbar=False, **kwargs)


@pytest.mark.slow
def test_pm_sample_defaults_run_nutpies_jax_backend_and_recover_the_truth(backends):
    idata = _sample(_model())
    assert backends == ["jax"]
    post = idata.posterior
    assert abs(float(post["mu"].mean()) - Y.mean()) < 0.05
    assert abs(float(post["sigma"].mean()) - Y.std()) < 0.05


@pytest.mark.parametrize(
    ("wrapped", "env", "kwargs", "backend"),
    [
        (True, "pymc", {}, "numba"),  # switched off
        (True, "auto", {"backend": "numba"}, "numba"),  # the user's choice wins
        (False, "auto", {}, "numba"),  # no JAX likelihood: PyMC's choice
    ],
    ids=["switched-off", "user-chose-numba", "no-wrapped-op"],
)
def test_otherwise_pymcs_choice_stands(backends, monkeypatch, wrapped, env, kwargs, backend):
    monkeypatch.setenv("PYMC_JAXOPS_NUTPIE_BACKEND", env)
    _sample(_model(wrapped), **kwargs)
    assert backends == [backend]


def test_a_model_that_cannot_compile_to_jax_keeps_numba():
    import pytensor.tensor as pt
    from pytensor.compile.ops import wrap_py

    @wrap_py(itypes=[pt.dscalar], otypes=[pt.dscalar])
    def black_box(x):  # no JAX implementation of its own
        return np.asarray(x * 1.0)

    from pymc_jaxops import register_jax_fallback, unregister_jax_fallback

    with pm.Model() as model:
        mu = pm.Normal("mu")
        pm.Potential("a", normal_loglik(Y, mu, 1.0))
        pm.Potential("b", black_box(mu))
    unregister_jax_fallback()
    try:
        assert "mode" not in steer("nutpie", model, {})
    finally:
        register_jax_fallback()
    assert "mode" in steer("nutpie", model, {})  # the fallback gives it a JAX implementation
    assert steer("numpyro", model, {}) == {}
