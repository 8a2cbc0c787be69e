"""Every NUTS sampler a PyMC user reaches recovers the HMM with a wrapped JAX likelihood.

The HMM is the seed model with its (known) initial and transition probabilities fixed, so
NUTS runs in two dimensions and each sampler takes seconds; one test runs the full seed
model (Dirichlet priors) on the fastest sampler.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from pytensor.compile.mode import get_mode

from examples.marginal_hmm import (
    P_INITIAL,
    P_TRANSITION,
    TRUE_NOISE,
    TRUE_SIGNAL,
    build_model,
    hmm_logp_op,
    simulate,
)
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp

DRAWS = TUNE = 300
SEED = 11


@pytest.fixture(scope="module")
def emissions():
    return simulate(n_sequences=20, n_steps=30)


@pytest.fixture(scope="module")
def model(emissions):
    with pm.Model() as model:
        signal = pm.Normal("emission_signal", 0, 1)
        noise = pm.HalfNormal("emission_noise", 1)
        log_init, log_trans = np.log(P_INITIAL), np.log(P_TRANSITION)
        pm.Potential("hmm", hmm_logp_op(emissions, signal, noise, log_init, log_trans))
    return model


def _nutpie():
    # nutpie is in the test extras on both lines: a broken install must fail, not skip.
    import nutpie

    return nutpie


def _assert_recovers(idata):
    post = idata.posterior
    assert post["emission_signal"].dtype == np.float64
    assert abs(float(post["emission_signal"].mean()) - TRUE_SIGNAL) < 0.05
    assert abs(float(post["emission_noise"].mean()) - TRUE_NOISE) < 0.05


def _pm_sample(model, **kwargs):
    return pm.sample(
        model=model,
        draws=DRAWS,
        tune=TUNE,
        chains=1,
        random_seed=SEED,
        progressbar=False,
        compute_convergence_checks=False,
        **kwargs,
    )


@pytest.mark.slow
def test_pymc_nuts(model):
    _assert_recovers(_pm_sample(model, nuts_sampler="pymc"))


@pytest.mark.slow
def test_numpyro_nuts(model):
    _assert_recovers(_pm_sample(model, nuts_sampler="numpyro"))


@pytest.mark.slow
def test_blackjax_nuts(model):
    # pm.sample(nuts_sampler="blackjax") is broken upstream with these versions.
    from pymc_jaxops import sample_blackjax_nuts

    idata = sample_blackjax_nuts(model, draws=DRAWS, tune=TUNE, chains=1, random_seed=SEED)
    _assert_recovers(idata)


@pytest.mark.slow
def test_nutpie_default_numba_backend(model):
    _nutpie()
    _assert_recovers(_pm_sample(model, nuts_sampler="nutpie"))


def _nutpie_jax(model):
    nutpie = _nutpie()
    compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax")
    return nutpie.sample(compiled, draws=DRAWS, tune=TUNE, chains=1, seed=SEED, progress_bar=False)


@pytest.mark.slow
def test_nutpie_jax_backend(model):
    _assert_recovers(_nutpie_jax(model))


@pytest.mark.slow
def test_nutpie_jax_backend_on_the_full_seed_model(emissions):
    _assert_recovers(_nutpie_jax(build_model(emissions)))


@pytest.mark.slow
def test_numba_mode_keeps_one_value_and_grad_call(model):
    """nutpie's numba backend compiles logp+dlogp in PyTensor's NUMBA mode."""
    point = model.initial_point()
    x = np.concatenate([np.ravel(v) for v in point.values()]) + 0.1
    results = {}
    # Both backends with the whole-graph XLA rewrite off, to see the Op they run.
    off = "pymc_jaxops_absorb"
    modes = {"FAST_RUN": get_mode("CVM").excluding(off), "NUMBA": get_mode("NUMBA").excluding(off)}
    for mode, compile_mode in modes.items():
        fn = model.logp_dlogp_function(ravel_inputs=True, mode=compile_mode)
        fn.set_extra_values({})
        nodes = fn._pytensor_function.maker.fgraph.apply_nodes
        jax_nodes = [n for n in nodes if isinstance(n.op, JaxOp)]
        assert len(jax_nodes) == 1 and isinstance(jax_nodes[0].op, JaxValueAndGradOp), mode
        results[mode] = fn(x)
    np.testing.assert_allclose(results["NUMBA"][0], results["FAST_RUN"][0], rtol=1e-12)
    np.testing.assert_allclose(results["NUMBA"][1], results["FAST_RUN"][1], rtol=1e-10)
