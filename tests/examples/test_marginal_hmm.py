"""The seed HMM: exact logp and gradient, one JAX call per logp+dlogp, set_data, sampling."""

import jax
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_default_mode
from scipy.special import logsumexp
from scipy.stats import norm

from examples.marginal_hmm import (
    TRUE_NOISE,
    TRUE_SIGNAL,
    build_custom_dist_model,
    build_model,
    hmm_logp,
    hmm_logp_op,
    simulate,
)
from pymc_jaxops import as_pytensor_op
from pymc_jaxops._absorb import XlaGraphOp
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp

EMISSIONS = simulate()


def _numpy_forward(emissions, signal, noise, logp_init, logp_trans):
    """An independent forward algorithm in NumPy/SciPy."""
    means = (np.arange(len(logp_init)) + 1.0) * signal
    total = 0.0
    for seq in emissions:
        alpha = logp_init + norm.logpdf(seq[0], means, noise)
        for e in seq[1:]:
            alpha = logsumexp(alpha[:, None] + logp_trans, axis=0) + norm.logpdf(e, means, noise)
        total += logsumexp(alpha)
    return total


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(3)
    p0 = rng.dirichlet(np.ones(3))
    P = rng.dirichlet(np.ones(3), size=3)
    return 1.1, 0.2, np.log(p0), np.log(P)


def test_logp_and_gradient_equal_pure_jax_reference(params):
    inputs = [pt.scalar("signal"), pt.scalar("noise"), pt.vector("li"), pt.matrix("lt")]
    out = hmm_logp_op(EMISSIONS, *inputs)
    f = pytensor.function(inputs, [out, *pt.grad(out, inputs)])
    got_value, *got_grads = f(*params)
    ref_value, ref_grads = jax.value_and_grad(hmm_logp, argnums=(1, 2, 3, 4))(EMISSIONS, *params)
    np.testing.assert_allclose(got_value, ref_value, rtol=1e-8)
    np.testing.assert_allclose(got_value, _numpy_forward(EMISSIONS, *params), rtol=1e-8)
    for got, want in zip(got_grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("absorbed", [False, True], ids=["C VM", "one XLA call"])
def test_model_logp_dlogp_runs_the_jax_forward_once_per_call(monkeypatch, absorbed):
    # Plan timing off: the fused plan (pymc_jaxops._plans may otherwise pick a faster one).
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")
    calls = []

    @as_pytensor_op(name="hmm_logp")
    def counted(*args):
        jax.debug.callback(lambda: calls.append(1))
        return hmm_logp(*args)

    model = build_model(EMISSIONS, logp_op=counted)
    mode = None if absorbed else get_default_mode().excluding("pymc_jaxops_absorb")
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    nodes = fn._pytensor_function.maker.fgraph.apply_nodes
    if absorbed:  # PyMC's default: the whole graph is one XLA call
        assert [type(n.op) for n in nodes] == [XlaGraphOp]
    else:
        assert [type(n.op) for n in nodes if isinstance(n.op, JaxOp)] == [JaxValueAndGradOp]
    x = np.concatenate([np.ravel(v) for v in model.initial_point().values()])
    fn(x)
    calls.clear()
    for _ in range(4):
        logp, grad = fn(x)
    assert len(calls) == 4
    assert np.isfinite(logp) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("shape", [(30, 51), (70, 60)])
def test_set_data_with_new_shapes_matches_a_fresh_model(shape):
    model = build_model(EMISSIONS)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    point = model.initial_point()
    new = simulate(*shape, seed=11)
    with model:
        pm.set_data({"emissions": new})
    fresh = build_model(new)
    np.testing.assert_allclose(logp(point), fresh.compile_logp()(point), rtol=1e-12)
    np.testing.assert_allclose(dlogp(point), fresh.compile_dlogp()(point), rtol=1e-12)


def test_custom_dist_pointwise_loglik_sums_to_the_potential():
    potential, custom = build_model(EMISSIONS), build_custom_dist_model(EMISSIONS)
    point = potential.initial_point()
    per_seq = custom.compile_fn(custom.logp(vars=[custom["emissions"]], sum=False)[0])(point)
    assert per_seq.shape == (70,)
    total = potential.compile_logp()(point) - potential.compile_logp(vars=potential.free_RVs)(
        point
    )
    np.testing.assert_allclose(per_seq.sum(), total, rtol=1e-10)


def _check_recovery(idata):
    post = idata.posterior
    assert post["emission_signal"].dtype == np.float64
    assert abs(float(post["emission_signal"].mean()) - TRUE_SIGNAL) < 0.05
    assert abs(float(post["emission_noise"].mean()) - TRUE_NOISE) < 0.05


# Fewer sequences keep the sampling tests short; the posterior is still tight around truth.
SMALL = simulate(20, 50)


@pytest.mark.slow
def test_pymc_nuts_recovers_truth():
    with build_model(SMALL):
        idata = pm.sample(
            200, tune=200, chains=2, cores=1, random_seed=1, progressbar=False, nuts_sampler="pymc"
        )
    _check_recovery(idata)


@pytest.mark.slow
def test_numpyro_recovers_truth():
    with build_model(SMALL):
        idata = pm.sample(
            200, tune=200, chains=2, nuts_sampler="numpyro", random_seed=1, progressbar=False
        )
    _check_recovery(idata)
