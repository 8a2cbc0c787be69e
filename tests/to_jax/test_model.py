"""model_to_jax: the JAX functions agree with PyMC and compose with JAX transforms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest
from scipy import stats

from examples.marginal_hmm import build_model as build_hmm_model
from examples.marginal_hmm import simulate as simulate_hmm
from pymc_jaxops import JaxModel, as_pytensor_op, model_to_jax

Y_OBS = np.random.default_rng(0).normal(1.0, 2.0, size=20)


def transformed_model() -> pm.Model:
    """One free variable per common transform: log, logodds, interval, simplex, none."""
    with pm.Model() as model:
        rate = pm.Exponential("rate", 2.0)
        p = pm.Beta("p", 2.0, 3.0)
        u = pm.Uniform("u", -1.0, 3.0)
        w = pm.Dirichlet("w", np.ones(3))
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Deterministic("mix", w @ np.array([1.0, 2.0, 3.0]) + mu)
        pm.Normal("y", mu + u * p, rate, observed=Y_OBS[:5])
    return model


def hierarchical_model() -> pm.Model:
    """Eight schools, non-centred, with coords and dims."""
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    with pm.Model(coords={"school": [f"s{i}" for i in range(8)]}) as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        z = pm.Normal("z", 0.0, 1.0, dims="school")
        theta = pm.Deterministic("theta", mu + tau * z, dims="school")
        pm.Normal("obs", theta, sigma, observed=y, dims="school")
    return model


@as_pytensor_op
def _normal_loglik(y, mu, sigma):
    return jax.scipy.stats.norm.logpdf(y, mu, sigma)


@as_pytensor_op
def _softplus(x):
    return jax.nn.softplus(x)


def test_wrapped_jax_ops_are_inlined_in_forward_graphs():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        soft = pm.Deterministic("soft", _softplus(mu))
        pm.Normal("y", soft, 0.01, observed=np.zeros(2))
    jm = model_to_jax(model)
    draws = jax.vmap(jm.sample_prior)(jax.random.split(jax.random.key(0), 50))
    np.testing.assert_allclose(draws["soft"], np.logaddexp(0.0, draws["mu"]), rtol=1e-12)
    np.testing.assert_allclose(draws["y"].mean(axis=1), draws["soft"], atol=0.03)
    grad = jax.grad(jm.logdensity)({"mu": 0.3})["mu"]
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")({"mu": np.array(0.3)})
    np.testing.assert_allclose(grad, dlogp[0], rtol=1e-8)


def wrapped_jax_model() -> pm.Model:
    """A likelihood written in JAX and wrapped as a PyTensor Op."""
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.CustomDist("y", mu, sigma, logp=_normal_loglik, observed=Y_OBS)
    return model


def prior_model() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 1.0, 2.0)
        pm.Normal("twin", 1.0, 2.0)
        pm.HalfNormal("sigma", 3.0)
        pm.Exponential("rate", 2.0)
        pm.HalfCauchy("tau", 1.0)
        pm.LogNormal("scale", 0.0, 0.5)
        pm.InverseGamma("var", 3.0, 2.0)
        pm.Poisson("count", 4.0)
        pm.Deterministic("shifted", mu + 10.0)
        pm.Normal("y", mu, 1.0, observed=np.zeros(3))
    return model


MODELS = {
    "transformed": transformed_model,
    "hierarchical": hierarchical_model,
    "wrapped_jax": wrapped_jax_model,
    "hmm": lambda: build_hmm_model(simulate_hmm(6, 12)),
    "prior": prior_model,
}


@functools.cache
def compiled_model(name: str) -> tuple[pm.Model, JaxModel]:
    # Shared across tests, so JAX compiles each function once per model.
    model = MODELS[name]()
    return model, model_to_jax(model)


@pytest.fixture(params=["transformed", "hierarchical", "wrapped_jax", "hmm"])
def compiled(request) -> tuple[pm.Model, JaxModel]:
    return compiled_model(request.param)


def _points(jm: JaxModel, n: int) -> list[dict]:
    keys = jax.random.split(jax.random.key(42), n)
    return [jm.initial_params(k) for k in keys]


@pytest.mark.slow
def test_logdensity_and_grad_match_pymc(compiled):
    model, jm = compiled
    # FAST_COMPILE skips PyTensor's C compilation (seconds per model); same graph, same values.
    logp = model.compile_logp(mode="FAST_COMPILE")
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    grad = jax.grad(jm.logdensity)
    for point in _points(jm, 4):
        np_point = {k: np.asarray(v) for k, v in point.items()}
        np.testing.assert_allclose(jm.logdensity(point), logp(np_point), rtol=1e-10)
        # compile_dlogp ravels the gradient in model.value_vars order.
        flat = np.concatenate([np.ravel(grad(point)[v.name]) for v in model.value_vars])
        np.testing.assert_allclose(flat, dlogp(np_point), rtol=1e-8, atol=1e-10)


def test_logdensity_is_a_scalar_that_vmaps_and_jits(compiled):
    _, jm = compiled
    points = _points(jm, 3)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *points)
    batched = jax.vmap(jm.logdensity)(stacked)
    assert batched.shape == (3,)
    assert batched.dtype == jnp.float64
    looped = [jax.jit(jm.logdensity)(p) for p in points]
    np.testing.assert_allclose(batched, looped, rtol=1e-12)


@pytest.mark.slow
def test_hessian_matches_finite_differences_of_grad():
    _, jm = compiled_model("hierarchical")
    point = _points(jm, 1)[0]
    flat, unravel = jax.flatten_util.ravel_pytree(point)
    hess = jax.hessian(lambda x: jm.logdensity(unravel(x)))(flat)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-8, atol=1e-10)
    grad = jax.jit(jax.grad(lambda x: jm.logdensity(unravel(x))))
    eps = 1e-6
    for i in range(flat.size):
        step = jnp.zeros_like(flat).at[i].set(eps)
        column = (grad(flat + step) - grad(flat - step)) / (2 * eps)
        np.testing.assert_allclose(hess[:, i], column, rtol=1e-4, atol=1e-5)


def test_hessian_of_a_gaussian_is_its_negative_precision():
    with pm.Model() as model:
        pm.Normal("x", 1.0, 2.0, shape=2)
    hess = jax.hessian(model_to_jax(model).logdensity)({"x": jnp.zeros(2)})
    np.testing.assert_allclose(hess["x"]["x"], -np.eye(2) / 4.0)


def test_constrain_gives_model_values_and_deterministics():
    _, jm = compiled_model("transformed")
    point = jm.initial_params(jax.random.key(0))
    values = jm.constrain(point)
    assert set(values) == {"rate", "p", "u", "w", "mu", "mix"}
    np.testing.assert_allclose(values["rate"], np.exp(point["rate_log__"]))
    np.testing.assert_allclose(values["p"], jax.nn.sigmoid(point["p_logodds__"]))
    np.testing.assert_allclose(jnp.sum(values["w"]), 1.0)
    expected = values["w"] @ np.array([1.0, 2.0, 3.0]) + point["mu"]
    np.testing.assert_allclose(values["mix"], expected)


@pytest.mark.slow
def test_initial_params_is_pymcs_jittered_point():
    model, jm = compiled_model("hierarchical")
    start = model.initial_point()
    keys = jax.random.split(jax.random.key(0), 200)
    points = jax.vmap(jm.initial_params)(keys)
    for name, value in start.items():
        offset = np.asarray(points[name]) - value
        # Every parameter here is jittered independently by uniform(-1, 1), except z, whose
        # support point is 0 whatever mu and tau are.
        assert np.all(np.abs(offset) <= 1.0)
        assert np.abs(offset).max() > 0.9
    again = jm.initial_params(keys[3])
    jax.tree.map(np.testing.assert_array_equal, again, jax.tree.map(lambda x: x[3], points))


def test_discrete_variables_start_unjittered():
    with pm.Model() as model:
        pm.Poisson("k", 3.0)
        pm.Normal("x", 0.0, 1.0)
    jm = model_to_jax(model)
    points = jax.vmap(jm.initial_params)(jax.random.split(jax.random.key(0), 20))
    assert points["k"].dtype == jnp.int64
    np.testing.assert_array_equal(points["k"], 3)
    assert np.unique(points["x"]).size == 20
    np.testing.assert_allclose(
        jm.logdensity({"k": 2, "x": 0.5}),
        model.compile_logp(mode="FAST_COMPILE")({"k": 2, "x": 0.5}),
    )


@pytest.fixture(scope="module")
def prior_draws() -> dict:
    _, jm = compiled_model("prior")
    return jax.vmap(jm.sample_prior)(jax.random.split(jax.random.key(2024), 1000))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dist"),
    [
        ("mu", stats.norm(1.0, 2.0)),
        ("twin", stats.norm(1.0, 2.0)),
        ("sigma", stats.halfnorm(scale=3.0)),
        ("rate", stats.expon(scale=0.5)),
        ("tau", stats.halfcauchy(scale=1.0)),
        ("scale", stats.lognorm(0.5)),
        ("var", stats.invgamma(3.0, scale=2.0)),
        ("shifted", stats.norm(11.0, 2.0)),
    ],
)
def test_prior_draws_follow_their_distributions(prior_draws, name, dist):
    draws = np.asarray(prior_draws[name])
    assert draws.shape == (1000,)
    assert np.unique(draws).size == 1000
    # Fixed key, so this is deterministic; a wrong sampler fails with p far below 1e-3.
    assert stats.kstest(draws, dist.cdf).pvalue > 1e-3


@pytest.mark.slow
def test_prior_moments_of_discrete_and_observed(prior_draws):
    count = np.asarray(prior_draws["count"])
    assert count.dtype == np.int64
    assert abs(count.mean() - 4.0) < 4 * np.sqrt(4.0 / 1000)
    y = np.asarray(prior_draws["y"])
    assert y.shape == (1000, 3)
    # y | mu ~ N(mu, 1) and mu ~ N(1, 2): marginally N(1, sqrt(5)), corr(y_i, y_j) = 4/5.
    assert abs(y.mean() - 1.0) < 4 * np.sqrt(5.0 / 1000)
    np.testing.assert_allclose(y.var(axis=0), 5.0, rtol=0.15)
    np.testing.assert_allclose(np.corrcoef(y.T)[0, 1], 0.8, atol=0.05)


@pytest.mark.slow
def test_each_random_variable_gets_its_own_key(prior_draws):
    # mu and twin have the same distribution; a shared key would make them equal.
    corr = np.corrcoef(prior_draws["mu"], prior_draws["twin"])[0, 1]
    assert abs(corr) < 0.1


@pytest.mark.slow
def test_same_key_same_draws_and_no_state(prior_draws):
    _, jm = compiled_model("prior")
    keys = jax.random.split(jax.random.key(2024), 1000)
    again = jm.sample_prior(keys[5])
    # Same key, same draws, whether batched by vmap or not; nothing carries over between calls.
    for name, value in again.items():
        np.testing.assert_allclose(value, prior_draws[name][5], rtol=1e-12)
    assert float(jm.sample_prior(keys[6])["mu"]) == float(prior_draws["mu"][6])


@pytest.mark.slow
def test_posterior_predictive_conditions_on_constrained_values():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.Deterministic("mu2", 2 * mu)
        pm.Normal("y", mu, sigma, observed=Y_OBS)
    jm = model_to_jax(model)
    keys = jax.random.split(jax.random.key(0), 500)
    values = {"mu": 5.0, "sigma": 0.1}
    draws = jax.vmap(jm.sample_posterior_predictive, in_axes=(0, None))(keys, values)["y"]
    assert draws.shape == (500, Y_OBS.size)
    np.testing.assert_allclose(draws.mean(), 5.0, atol=0.01)
    np.testing.assert_allclose(draws.std(), 0.1, rtol=0.05)
    # Draws vmap over a batch of posterior values; constrain's output plugs straight in.
    posterior = {"mu": jnp.array([0.0, 100.0]), "sigma": jnp.array([1.0, 1.0])}
    pair = jax.vmap(jm.sample_posterior_predictive)(keys[:2], posterior)["y"]
    assert pair[0].mean() < 5.0 < 95.0 < pair[1].mean()
    point = jm.initial_params(jax.random.key(1))
    assert set(jm.sample_posterior_predictive(keys[0], jm.constrain(point))) == {"y"}
    with pytest.raises(KeyError, match=r"missing \['sigma'\]"):
        jm.sample_posterior_predictive(keys[0], point)


def test_data_is_frozen_at_compile_time():
    with pm.Model() as model:
        x = pm.Data("x", np.array([1.0, 2.0]))
        beta = pm.Normal("beta")
        pm.Normal("y", beta * x, 1.0, observed=np.array([1.0, 2.0]), shape=x.shape)
    before = model_to_jax(model)
    with model:
        pm.set_data({"x": np.array([3.0, 4.0])})
    after = model_to_jax(model)
    params = {"beta": 1.0}
    assert before.logdensity(params) != after.logdensity(params)
    logp = model.compile_logp(mode="FAST_COMPILE")
    np.testing.assert_allclose(after.logdensity(params), logp(params))


def test_clear_errors():
    _, jm = compiled_model("transformed")
    point = jm.initial_params(jax.random.key(0))
    with pytest.raises(KeyError, match=r"missing \['rate_log__'\].*unexpected \['rate'\]"):
        jm.logdensity({**{k: v for k, v in point.items() if k != "rate_log__"}, "rate": 1.0})
    with pytest.raises(ValueError, match=r"'w_simplex__' has shape \(3,\).*expects \(2,\)"):
        jm.logdensity({**point, "w_simplex__": jnp.zeros(3)})
    with pytest.raises(TypeError, match="expected one JAX PRNG key"):
        jm.sample_prior(jax.random.split(jax.random.key(0), 3))
    with pytest.raises(TypeError, match="dict of"):
        jm.constrain([1.0])


def test_refuses_to_truncate_to_32_bit():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            model_to_jax(hierarchical_model())
    finally:
        jax.config.update("jax_enable_x64", True)


def test_sample_prior_warns_that_potentials_are_ignored():
    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Potential("keep_positive", pm.math.switch(x > 0, 0.0, -np.inf))
    jm = model_to_jax(model)
    with pytest.warns(UserWarning, match="ignores the model's Potentials"):
        draws = jax.vmap(jm.sample_prior)(jax.random.split(jax.random.key(0), 200))
    assert (draws["x"] < 0).any()
    assert jm.logdensity({"x": -1.0}) == -np.inf
