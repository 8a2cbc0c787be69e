"""sample_blackjax_nuts: recovers known parameters, returns PyMC-shaped InferenceData."""

import contextlib
import io

import arviz as az
import jax
import numpy as np
import pymc as pm
import pytest

from pymc_jaxops import sample_blackjax_nuts
from pymc_jaxops.to_jax import blackjax_nuts
from tests import _subprocess

SCRIPTS = _subprocess.SCRIPTS

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
        progressbar=False,
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


TINY = {"draws": 30, "tune": 30, "chains": 2, "random_seed": 5}


@pytest.fixture(scope="module")
def tiny_runs() -> dict[str, az.InferenceData]:
    """The tiny model sampled with every chain method, and again in 3-draw chunks."""
    runs = {}
    for method in ("sequential", "parallel", "vectorized"):
        runs[method] = sample_blackjax_nuts(
            _tiny_model(), chain_method=method, progressbar=False, **TINY
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blackjax_nuts, "_CHUNK_MAX", 3)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runs["sequential, 3-draw chunks, progress bar"] = sample_blackjax_nuts(
                _tiny_model(), chain_method="sequential", progressbar=True, **TINY
            )
    runs["progress output"] = out.getvalue()  # type: ignore[assignment]
    return runs


@pytest.mark.slow
def test_same_seed_same_draws(tiny_runs):
    # Two runs with the same seed (the second one chunked differently, see below).
    first, again = tiny_runs["sequential"], tiny_runs["sequential, 3-draw chunks, progress bar"]
    np.testing.assert_array_equal(first.posterior["mu"], again.posterior["mu"])
    assert first.posterior["mu"].shape == (2, 30)
    # Each chain gets its own key.
    chains = first.posterior["mu"].values
    assert not np.array_equal(chains[0], chains[1])


@pytest.mark.slow
def test_parallel_draws_equal_sequential_draws(tiny_runs):
    if jax.device_count() < 2:
        pytest.skip(f"JAX has {jax.device_count()} device here; parallel needs 2")
    seq, par = tiny_runs["sequential"], tiny_runs["parallel"]
    assert par.posterior.attrs["chain_method"] == "parallel"
    for group in ("posterior", "sample_stats"):
        for name, values in seq[group].items():
            np.testing.assert_array_equal(par[group][name], values, err_msg=name)


@pytest.mark.slow
def test_vectorized_draws_equal_sequential_draws_to_rounding(tiny_runs):
    # jax.vmap may reorder floating-point sums, so equal up to rounding only.
    seq, vec = tiny_runs["sequential"], tiny_runs["vectorized"]
    np.testing.assert_allclose(vec.posterior["mu"], seq.posterior["mu"], rtol=1e-9)
    np.testing.assert_array_equal(vec.sample_stats["n_steps"], seq.sample_stats["n_steps"])


@pytest.mark.slow
def test_draws_do_not_depend_on_chunk_size(tiny_runs):
    whole, chunked = tiny_runs["sequential"], tiny_runs["sequential, 3-draw chunks, progress bar"]
    np.testing.assert_array_equal(chunked.posterior["mu"], whole.posterior["mu"])
    np.testing.assert_array_equal(chunked.sample_stats["lp"], whole.sample_stats["lp"])


@pytest.mark.slow
def test_progress_bar_shows_every_chain(tiny_runs):
    out = tiny_runs["progress output"]
    assert "chain 0" in out and "chain 1" in out
    assert "60/60" in out  # tune + draws
    assert "divergences" in out


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "killpg"), reason="POSIX process groups")
def test_ctrl_c_stops_within_seconds_and_returns_the_draws_so_far():
    """The child asks for a million draws; SIGINT must end it soon after the draws begin."""
    code, out, err = _subprocess.run_script(SCRIPTS / "blackjax_interrupt.py", timeout=300)
    assert code == 0, f"{out}\n{err[-3000:]}"
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert 0 < int(lines["DRAWS"]) < 10**6
    # One chunk is sized to ~0.5 s; allow for a loaded 2-core CI machine.
    assert float(lines["LATENCY"]) < 15, out
    assert "interrupted; returning the" in lines["WARNING"]


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
        ({"chain_method": "pmap"}, "chain_method must be one of"),
        ({"max_tree_depth": 0}, "max_tree_depth must be an int >= 1, got 0"),
        ({"max_tree_depth": -1}, "max_tree_depth must be an int >= 1, got -1"),
        ({"max_tree_depth": 2.0}, "max_tree_depth must be an int"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_blackjax_nuts(_tiny_model(), **kwargs)


@pytest.mark.parametrize(
    "seed", ["abc", 1.5, -1, True, [], [1, -2], jax.random.key(0), jax.random.PRNGKey(0)]
)
def test_bad_random_seeds_are_refused_naming_the_argument(seed):
    with pytest.raises(TypeError, match="sample_blackjax_nuts: random_seed must be None"):
        sample_blackjax_nuts(_tiny_model(), random_seed=seed)


def test_jax_keys_are_refused_with_a_hint():
    with pytest.raises(TypeError, match="pass an int instead of a JAX key"):
        sample_blackjax_nuts(_tiny_model(), random_seed=jax.random.key(0))


def test_random_seed_accepts_what_pm_sample_accepts():
    seed = blackjax_nuts._seed_from
    assert seed(7) == seed(np.int64(7)) == 7
    assert seed([1, 2]) == seed((1, 2)) == seed(np.array([1, 2])) != seed([2, 1])
    assert seed(np.random.default_rng(3)) == seed(np.random.default_rng(3))
    assert seed(2**40) == seed(2**40) != seed(2**40 + 1)
    assert all(0 <= seed(s) < 2**32 for s in (0, 2**32 - 1, 2**70, [5], None))


def test_a_model_without_free_variables_is_refused():
    with pm.Model() as model:
        pm.Normal("y", 0.0, 1.0, observed=[0.0])
    with pytest.raises(ValueError, match="no free variables"):
        sample_blackjax_nuts(model)
