"""sample_blackjax_nuts: recovers known parameters, returns PyMC-shaped InferenceData."""

import arviz as az
import numpy as np
import pymc as pm
import pytest

from pymc_jaxops import sample_blackjax_nuts

TRUE = {"alpha": 1.0, "beta": np.array([2.0, -1.0]), "sigma": 0.5}


def regression_model() -> pm.Model:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 2))
    y = TRUE["alpha"] + x @ TRUE["beta"] + rng.normal(0.0, TRUE["sigma"], size=100)
    coords = {"obs": np.arange(100), "feature": ["f0", "f1"]}
    with pm.Model(coords=coords) as model:
        x_data = pm.Data("x", x, dims=("obs", "feature"))
        alpha = pm.Normal("alpha", 0.0, 5.0)
        beta = pm.Normal("beta", 0.0, 5.0, dims="feature")
        sigma = pm.HalfNormal("sigma", 2.0)
        mu = pm.Deterministic("mu", alpha + x_data @ beta, dims="obs")
        pm.Normal("y", mu, sigma, observed=y, dims="obs")
    return model


@pytest.fixture(scope="module")
def idata() -> az.InferenceData:
    # Sequential here; test_same_seed_same_draws covers the vectorized default.
    return sample_blackjax_nuts(
        regression_model(),
        draws=300,
        tune=300,
        chains=2,
        random_seed=11,
        chain_method="sequential",
    )


@pytest.mark.slow
def test_recovers_known_parameters(idata):
    post = idata.posterior
    for name in ("alpha", "sigma"):
        draws = post[name].values
        assert abs(draws.mean() - TRUE[name]) < 4 * draws.std(), name
    beta = post["beta"].values.reshape(-1, 2)
    assert np.all(np.abs(beta.mean(0) - TRUE["beta"]) < 4 * beta.std(0))
    summary = az.summary(idata, var_names=["alpha", "beta", "sigma"])
    assert (summary["r_hat"] < 1.05).all()
    assert (summary["ess_bulk"] > 100).all()
    assert not idata.sample_stats["diverging"].values.any()


@pytest.mark.slow
def test_inference_data_has_pymcs_names_dims_and_coords(idata):
    model = regression_model()
    post = idata.posterior
    assert set(post.data_vars) == {"alpha", "beta", "sigma", "mu"}
    assert post["beta"].dims == ("chain", "draw", "feature")
    assert post["mu"].dims == ("chain", "draw", "obs")
    assert list(post["feature"].values) == ["f0", "f1"]
    assert post.sizes == {"chain": 2, "draw": 300, "feature": 2, "obs": 100}
    # The deterministic is recomputed from the constrained draws.
    x = model["x"].get_value()
    expected = post["alpha"].values[..., None] + post["beta"].values @ x.T
    np.testing.assert_allclose(post["mu"].values, expected, rtol=1e-10)
    assert (post["sigma"].values > 0).all()

    np.testing.assert_array_equal(
        idata.observed_data["y"].values, model.rvs_to_values[model["y"]].data
    )
    assert idata.observed_data["y"].dims == ("obs",)
    np.testing.assert_array_equal(idata.constant_data["x"].values, x)

    stats = idata.sample_stats
    expected_stats = {"diverging", "acceptance_rate", "step_size", "tree_depth"}
    assert expected_stats | {"n_steps", "energy", "lp"} == set(stats.data_vars)
    assert stats["diverging"].dtype == bool
    assert ((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1)).all()
    step = stats["step_size"].values
    np.testing.assert_array_equal(step, step[:, :1].repeat(300, axis=1))
    assert (stats["tree_depth"].values >= 1).all()
    assert idata.posterior.attrs["tuning_steps"] == 300
    assert idata.posterior.attrs["random_seed"] == 11


def _tiny_model() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Normal("y", mu, 1.0, observed=[0.5, 1.5])
    return model


@pytest.mark.slow
def test_same_seed_same_draws():
    kwargs = {"draws": 30, "tune": 30, "chains": 2}
    first = sample_blackjax_nuts(_tiny_model(), random_seed=5, **kwargs)
    again = sample_blackjax_nuts(_tiny_model(), random_seed=5, **kwargs)
    np.testing.assert_array_equal(first.posterior["mu"], again.posterior["mu"])
    assert first.posterior["mu"].shape == (2, 30)
    # Each chain gets its own key.
    chains = first.posterior["mu"].values
    assert not np.array_equal(chains[0], chains[1])


def test_discrete_free_variables_are_refused_early():
    with pm.Model() as model:
        pm.Poisson("k", 3.0)
        pm.Normal("x", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"free variables \['k'\] are discrete"):
        sample_blackjax_nuts(model)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"draws": 0}, "draws must be an int >= 1"),
        ({"tune": 0}, "tune must be an int >= 1"),
        ({"chains": 1.5}, "chains must be an int"),
        ({"target_accept": 1.0}, "target_accept must be in"),
        ({"chain_method": "parallel"}, "chain_method must be"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_blackjax_nuts(_tiny_model(), **kwargs)


def test_a_model_without_free_variables_is_refused():
    with pm.Model() as model:
        pm.Normal("y", 0.0, 1.0, observed=[0.0])
    with pytest.raises(ValueError, match="no free variables"):
        sample_blackjax_nuts(model)
