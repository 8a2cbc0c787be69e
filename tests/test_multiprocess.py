"""pm.sample(cores=2) never forks a live JAX runtime, and workers compute in float64.

The in-process model is the seed HMM with known transition probabilities (two free parameters keep
NUTS cheap). Forked workers hang on it every time, so a regression fails on the timeout
instead of passing by luck.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest

from examples.marginal_hmm import P_INITIAL, P_TRANSITION, TRUE_NOISE, TRUE_SIGNAL, hmm_logp
from pymc_jaxops import as_pytensor_op
from pymc_jaxops.multiprocess import safe_context

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611
SAMPLE_KW = dict(draws=150, tune=150, chains=2, random_seed=SEED, progressbar=False)
SAMPLE_KW["compute_convergence_checks"] = False


@as_pytensor_op
def hmm_known_transitions(emissions, signal, noise):
    """Defined in this test module: workers unpickle it by reference."""
    return hmm_logp(
        emissions, signal, noise, jnp.log(jnp.asarray(P_INITIAL)), jnp.log(P_TRANSITION)
    )


def _emissions():
    from examples.marginal_hmm import simulate

    return simulate(n_sequences=10, n_steps=20, seed=SEED)


def _model() -> pm.Model:
    with pm.Model() as model:
        signal = pm.Normal("signal", 0, 1)
        noise = pm.HalfNormal("noise", 1)
        pm.Potential("hmm", hmm_known_transitions(_emissions(), signal, noise))
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def single_process(model):
    return pm.sample(model=model, cores=1, **SAMPLE_KW)


def _check_like_single_process(idata, single, model):
    post, ref = idata.posterior, single.posterior
    for name in ("signal", "noise"):
        assert post[name].dtype == np.float64
        # Same seeds, same float64 arithmetic: equal within Monte Carlo error (in practice
        # the draws are identical).
        mc_err = float(ref[name].std()) / np.sqrt(ref[name].size / 10)
        assert abs(float(post[name].mean()) - float(ref[name].mean())) < mc_err
    assert abs(float(post["signal"].mean()) - TRUE_SIGNAL) < 0.05
    assert abs(float(post["noise"].mean()) - TRUE_NOISE) < 0.05
    # The workers' log density (NUTS "lp") equals the parent's float64 one to 1e-10:
    # a worker that computed in float32 would be off by ~1e-6 relative.
    logp = model.compile_logp()
    lp = idata.sample_stats["lp"].values
    for chain, draw in [(0, 0), (1, -1)]:
        point = {
            "signal": post["signal"].values[chain, draw],
            "noise_log__": np.log(post["noise"].values[chain, draw]),
        }
        np.testing.assert_allclose(lp[chain, draw], logp(point), rtol=1e-10)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_cores_with_default_start_method_finish_in_float64(model, single_process):
    # The default is fork on Linux; pymc_jaxops starts the chains with spawn instead.
    idata = pm.sample(model=model, cores=2, **SAMPLE_KW)
    _check_like_single_process(idata, single_process, model)


_SCRIPT = """
import json
import jax.numpy as jnp
import numpy as np
import pymc as pm
from pymc_jaxops import as_pytensor_op

@as_pytensor_op
def ar_logp(y, mu, sigma):  # defined in __main__: workers get it by value (cloudpickle)
    import jax
    def step(prev, x):
        return x, jax.scipy.stats.norm.logpdf(x, mu + 0.5 * (prev - mu), sigma)
    _, lp = jax.lax.scan(step, y[0], y[1:])
    return jnp.sum(lp)

if __name__ == "__main__":
    y = np.random.default_rng(1).normal(1.0, 0.5, 40)
    with pm.Model():
        mu = pm.Normal("mu", 0, 10)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Potential("lik", ar_logp(y, mu, sigma))
        idata = pm.sample(draws=150, tune=150, chains=2, cores=2, random_seed=3,
                          progressbar=False, mp_ctx=MP_CTX, compute_convergence_checks=False)
    print(json.dumps({"mean": float(idata.posterior["mu"].mean()),
                      "dtype": str(idata.posterior["mu"].dtype)}))
"""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_script_with_function_in_main_and_forkserver(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(_SCRIPT).replace("MP_CTX", repr("forkserver")))
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=400, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dtype"] == "float64"
    assert abs(result["mean"] - 0.97) < 0.3  # data mean of the simulated AR(1) series


@pytest.fixture
def jax_live(monkeypatch):
    """As in pm.sample, where the parent has evaluated the model before starting chains."""
    monkeypatch.setattr("pymc_jaxops.multiprocess._jax_runtime_live", lambda: True)


def test_fork_becomes_spawn_for_a_jax_step(model, caplog, jax_live):
    with model:
        step = pm.NUTS()
    caplog.set_level("INFO", logger="pymc.sampling.parallel")
    ctx = safe_context(multiprocessing.get_context("fork"), step)
    assert ctx.get_start_method() == "spawn"
    assert "instead of 'fork'" in caplog.text


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_other_start_methods_are_kept(model, method):
    with model:
        step = pm.NUTS()
    ctx = multiprocessing.get_context(method)
    assert safe_context(ctx, step) is ctx


def test_fork_is_kept_without_jax(monkeypatch, jax_live):
    with pm.Model():
        pm.Normal("x")
        plain_step = pm.NUTS()
    fork = multiprocessing.get_context("fork")
    assert safe_context(fork, plain_step) is fork

    with _model():
        jax_step = pm.NUTS()
    monkeypatch.setattr("pymc_jaxops.multiprocess._jax_runtime_live", lambda: False)
    assert safe_context(fork, jax_step) is fork


def test_compound_and_metropolis_steps_are_seen(model, jax_live):
    with model:
        step = pm.CompoundStep([pm.Metropolis([model["signal"]]), pm.NUTS([model["noise"]])])
        metropolis = pm.Metropolis()
    fork = multiprocessing.get_context("fork")
    assert safe_context(fork, step).get_start_method() == "spawn"
    assert safe_context(fork, metropolis).get_start_method() == "spawn"
