"""PyMC's multi-process entry points on models that call JAX, however the code is run.

The in-process model is the seed HMM with known transition probabilities (two free parameters
keep NUTS cheap): forked workers hang on it every time, so a regression fails on the timeout
instead of passing by luck. The script tests run ``tests/scripts/*.py`` as a user would, in a
fresh ``python`` of their own session (``tests/_subprocess.py``): a hang fails on the timeout,
and every process of the session must be gone once the script has ended.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest

from examples.marginal_hmm import P_INITIAL, P_TRANSITION, TRUE_NOISE, TRUE_SIGNAL, hmm_logp
from pymc_jaxops import as_pytensor_op, multiprocess
from tests import _subprocess
from tests._subprocess import SCRIPTS

SEED = 20240611
# PyMC's own NUTS and chain processes (on pymc 6, pm.sample() would pick nutpie).
SAMPLE_KW = dict(
    draws=150, tune=150, chains=2, random_seed=SEED, progressbar=False, nuts_sampler="pymc"
)
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
@pytest.mark.parametrize("chains_in", ["threads", "processes"])
def test_two_cores_with_default_start_method_finish_in_float64(
    model, single_process, chains_in, monkeypatch
):
    # The default is fork on Linux; pymc_jaxops runs these short chains in threads of this
    # process, or (threads switched off) starts them in fresh interpreters.
    started = _spy_on_chain_threads(monkeypatch)
    if chains_in == "processes":
        monkeypatch.setenv("PYMC_JAXOPS_CHAIN_THREADS", "0")
    idata = pm.sample(model=model, cores=2, **SAMPLE_KW)
    assert len(started) == (2 if chains_in == "threads" else 0)
    _check_like_single_process(idata, single_process, model)


def _spy_on_chain_threads(monkeypatch) -> list[str]:
    from pymc_jaxops import _thread_start

    started: list[str] = []
    init = _thread_start.Popen.__init__

    def spy(self, process_obj):
        started.append(process_obj.name)
        init(self, process_obj)

    monkeypatch.setattr(_thread_start.Popen, "__init__", spy)
    return started


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_chains_in_threads_draw_what_chains_in_processes_draw(model, monkeypatch):
    started = _spy_on_chain_threads(monkeypatch)
    threaded = pm.sample(model=model, cores=2, **SAMPLE_KW)
    assert sorted(started) == ["worker_chain_0", "worker_chain_1"]
    monkeypatch.setenv("PYMC_JAXOPS_CHAIN_THREADS", "0")
    in_processes = pm.sample(model=model, cores=2, **SAMPLE_KW)
    assert len(started) == 2
    for name in ("signal", "noise"):
        np.testing.assert_allclose(
            threaded.posterior[name].values, in_processes.posterior[name].values, rtol=1e-9
        )


def test_long_cheap_chains_still_start_processes(monkeypatch):
    # Python-bound NUTS steps would take turns on the GIL: two processes pay for their start.
    from pymc.sampling.parallel import _run_process

    from pymc_jaxops import _thread_start

    y = np.random.default_rng(0).normal(size=20)
    with pm.Model():
        mu = pm.Normal("mu")
        pm.Potential("lik", as_pytensor_op(lambda y, m: jnp.sum(-0.5 * (y - m) ** 2))(y, mu))
        step = pm.NUTS()
    point = {"mu": np.array(0.3)}
    shared = {"mu": (np.ascontiguousarray(point["mu"]).tobytes(), (), np.dtype("float64"))}

    class _Proc:
        _target = _run_process

        def __init__(self, draws):
            self._args = ("w", None, step, False, shared, draws, 1000, None, 1, 0, "fork", None)

    def pays(draws):
        _thread_start._DECISIONS.clear()  # decided once per step otherwise
        return _thread_start.pays(_Proc(draws))

    # The rule, not this machine: 2 cores, and a call's time fixed (a loaded machine would
    # otherwise make a cheap model look XLA-bound).
    monkeypatch.setattr(_thread_start, "_cores", lambda: 2)
    monkeypatch.setattr(_thread_start, "_seconds_per_call", lambda compiled, x: 30e-6)

    assert not pays(10**6)
    assert pays(100)  # short chains cannot pay for processes
    monkeypatch.setattr(_thread_start, "_seconds_per_call", lambda compiled, x: 300e-6)
    assert pays(10**6)  # "XLA-bound": the graph is one XlaGraphOp taking >= 150 us


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_error_in_a_chain_thread_reaches_the_parent():
    import threading

    import jax

    def fail_off_the_main_thread(x):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("loglik failed in a chain thread")
        return x

    @jax.custom_jvp
    def checked(mu):  # the identity, through Python on every call
        return jax.pure_callback(fail_off_the_main_thread, jax.ShapeDtypeStruct((), mu.dtype), mu)

    checked.defjvp(lambda primals, tangents: (checked(*primals), tangents[0]))

    @as_pytensor_op
    def loglik(y, mu):
        return jnp.sum(-0.5 * (y - checked(mu)) ** 2)

    with pm.Model():
        mu = pm.Normal("mu")
        pm.Potential("lik", loglik(np.zeros(5), mu))
        with pytest.raises(Exception, match="loglik failed in a chain thread"):
            pm.sample(draws=50, tune=50, chains=2, cores=2, progressbar=False, nuts_sampler="pymc")


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
                          progressbar=False, mp_ctx=MP_CTX, compute_convergence_checks=False,
                          nuts_sampler="pymc")
    print(json.dumps({"mean": float(idata.posterior["mu"].mean()),
                      "dtype": str(idata.posterior["mu"].dtype)}))
"""


TRUE_MU, TRUE_SIGMA = 1.5, 0.5  # tests/scripts/sample_unguarded.py
DATA_MU = float(np.random.default_rng(1).normal(TRUE_MU, TRUE_SIGMA, 200).mean())


def _check_recovers_truth(result: _subprocess.Result, entry: str) -> dict[str, float]:
    assert result.returncode == 0, result.err[-4000:]
    assert not result.orphans, f"processes left after the script ended: {result.orphans}"
    lines = [line for line in result.out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result:\n{result.out[-2000:]}\n{result.err[-4000:]}"
    means = json.loads(lines[-1].removeprefix("RESULT "))
    # 200 observations: posterior sd of mu ~0.035, of sigma ~0.025. The posterior mean of mu
    # is the data mean up to the prior's pull; both are near the truth.
    assert abs(means["mu"] - DATA_MU) < 0.03, means
    assert abs(means["mu"] - TRUE_MU) < 0.12, means
    assert abs(means["sigma"] - TRUE_SIGMA) < 0.1, means
    if entry.startswith("demetropolis"):  # PyMC falls back to one process when it cannot start
        assert "Population parallelization failed" not in result.err
    return means


SCRIPT = str(SCRIPTS / "sample_unguarded.py")


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["ppc", "smc", "demetropolis"])
def test_unguarded_script_file(entry):
    # JAX runs in the script before sampling; NUTS (then posterior predictive), SMC and a
    # population sampler all start chain processes, and the script has no main guard.
    result = _subprocess.run([SCRIPT, entry], timeout=400)
    means = _check_recovers_truth(result, entry)
    if entry == "ppc":
        assert abs(means["y_mean"] - means["mu"]) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["nuts", "smc"])
def test_unguarded_script_with_forkserver_as_default(entry):
    # Python 3.14 makes forkserver the default on Linux: its server imports __main__, which
    # would re-run an unguarded script. Chain processes start in fresh interpreters instead.
    result = _subprocess.run(
        [SCRIPT, entry], timeout=400, extra_env={"START_METHOD": "forkserver"}
    )
    _check_recovers_truth(result, entry)


@pytest.mark.slow
def test_unguarded_script_with_pm_sample_defaults():
    # pymc 6 with nutpie installed: nutpie (Numba backend, chains in Rust threads); pymc 5:
    # PyMC's NUTS in chain processes. Either way, no main guard and the right answer.
    result = _subprocess.run([SCRIPT, "default"], timeout=500)
    _check_recovers_truth(result, "default")


@pytest.mark.slow
def test_script_fed_on_stdin():
    source = (SCRIPTS / "sample_unguarded.py").read_text()
    result = _subprocess.run(["-", "nuts"], timeout=400, stdin=source)
    _check_recovers_truth(result, "nuts")


@pytest.mark.slow
def test_python_dash_c():
    source = (SCRIPTS / "sample_unguarded.py").read_text()
    result = _subprocess.run(["-c", source, "demetropolisz"], timeout=400)
    _check_recovers_truth(result, "demetropolisz")


# IPython is not installed here: a notebook cell is emulated the way IPython runs one, code
# compiled under an "<ipython-input-...>" file name and executed in __main__'s namespace.
_NOTEBOOK = """
import sys, __main__
sys.argv = ["ipykernel_launcher.py", "nuts"]
source = open({script!r}).read()
exec(compile(source, "<ipython-input-3-5f1c2ab9e0d4>", "exec"), __main__.__dict__)
"""


@pytest.mark.slow
def test_notebook_cell():
    result = _subprocess.run(["-c", _NOTEBOOK.format(script=SCRIPT)], timeout=400)
    _check_recovers_truth(result, "nuts")


_FAILING = str(SCRIPTS / "worker_failure.py")


def _until_workers_report(proc, timeout: float) -> list[int]:
    line = _subprocess.line_starting(proc, "WORKERS", timeout)
    if line is not None:
        return [int(p) for p in line.split()[1:]]
    _subprocess.kill_session(proc)
    raise AssertionError(f"workers never reported:\n{proc.stderr.read()[-4000:]}")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_killed_worker_makes_the_parent_raise():
    proc = _subprocess.start([_FAILING, "kill", "nuts"], stdin=subprocess.DEVNULL)
    try:
        workers = _until_workers_report(proc, timeout=300)
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - killed_at
        left = _subprocess.wait_for_no_processes(proc.pid)
    finally:
        _subprocess.kill_session(proc)
    assert proc.returncode != 0
    assert "WorkerProcessError" in err and "was killed by signal 9 (SIGKILL)" in err, err[-3000:]
    assert f"(pid {workers[0]})" in err
    assert took < 60  # a hang would have been killed by communicate's timeout
    assert not left, f"processes left after the parent ended: {left}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "entry", "expected"),
    [
        # PyMC's ParallelSampler reports an exception in a NUTS worker itself; the population
        # sampler's worker only logs it and returns, and its parent waited forever.
        ("raise", "demetropolis", "loglik failed inside the worker"),
        ("import", "nuts", "No module named 'failing_helper'"),
    ],
)
def test_failing_worker_makes_the_parent_raise(mode, entry, expected):
    result = _subprocess.run([_FAILING, mode, entry], timeout=300)
    assert result.returncode != 0
    assert "FINISHED" not in result.out
    assert expected in result.err, result.err[-4000:]
    assert "WorkerProcessError" in result.err, result.err[-4000:]
    assert not result.orphans


def test_only_pymc_chain_workers_are_started_differently():
    from pymc.sampling.parallel import _run_process
    from pymc.sampling.population import PopulationStepper
    from pymc.smc.parallel import _run_smc_process

    from pymc_jaxops._upstream.pymc import is_chain_worker

    fork = multiprocessing.get_context("fork")
    for target in (_run_process, _run_smc_process, PopulationStepper._run_secondary):
        assert is_chain_worker(fork.Process(target=target))
    assert not is_chain_worker(fork.Process(target=print))


def test_uninstall_restores_fork_and_forkserver_and_install_is_idempotent():
    classes = (multiprocessing.context.ForkProcess, multiprocessing.context.ForkServerProcess)
    original = [cls._Popen for cls in classes]
    try:
        multiprocess.install()
        assert [cls._Popen for cls in classes] == original
        assert all(hasattr(p, "_pymc_jaxops_original") for p in original)
        multiprocess.uninstall()
        assert not multiprocess.installed()
        assert not any(hasattr(cls._Popen, "_pymc_jaxops_original") for cls in classes)
    finally:
        multiprocess.install()
    assert multiprocess.installed()


def test_environment_variable_opts_out():
    code = "import pymc_jaxops.multiprocess as m; print(m.installed())"
    result = _subprocess.run(
        ["-c", code], timeout=120, extra_env={"PYMC_JAXOPS_SAFE_PROCESSES": "0"}
    )
    assert result.out.strip() == "False", result.err[-2000:]


@pytest.mark.slow
def test_guarded_script_with_function_in_main_and_forkserver(tmp_path):
    # Chain processes of a forkserver context start in fresh interpreters too (the fork server
    # would import __main__); a guarded script with its function in __main__ samples.
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(_SCRIPT).replace("MP_CTX", repr("forkserver")))
    result = _subprocess.run([str(script)], timeout=400)
    assert result.returncode == 0, result.err[-3000:]
    out = json.loads(result.out.strip().splitlines()[-1])
    assert out["dtype"] == "float64"
    assert abs(out["mean"] - 0.97) < 0.3  # data mean of the simulated AR(1) series
