"""Plans timed while the calls go on: one program before the first answer, the fastest after."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_default_mode

from pymc_jaxops import _plans, _programs, as_pytensor_op, clear_caches
from pymc_jaxops._absorb import TAG, XlaGraphOp
from pymc_jaxops._plans import Race
from tests._compiles import Compiled
from tests.test_residuals import PASSES, T, trajectory

C_ONLY = get_default_mode().excluding(TAG)


@pytest.fixture(autouse=True)
def _no_plans_chosen_before():
    # Equal absorbed graphs share the plan chosen for them (_programs.py): start afresh,
    # and leave no forced choice to later tests.
    _programs.clear()
    yield
    _programs.clear()


def _counted(plans: dict):
    calls = dict.fromkeys(plans, 0)

    def thunk(name, seconds):
        def run():
            calls[name] += 1
            if isinstance(seconds, Exception):
                raise seconds
            if seconds:
                time.sleep(seconds)

        return run

    runs = {name: thunk(name, s) for name, s in plans.items()}
    return calls, lambda args: runs


def _race_until_decided(race, thunks, calls=10):
    for _ in range(calls):
        race.plan((), thunks)
        race.wait(timeout=30)
    return race.winner


def test_the_first_answer_compiles_only_the_default():
    race = Race("a", ["a", "b"])
    calls, thunks = _counted({"a": 0.002, "b": 0.0})
    assert race.plan((), thunks) == "a"
    assert calls == {"a": 0, "b": 0}  # the caller's own call is the only one


def test_a_cheap_default_is_kept_without_compiling_the_others():
    race = Race("a", ["a", "b"])
    calls, thunks = _counted({"a": 0.0, "b": 0.0})
    assert _race_until_decided(race, thunks) == "a"
    assert calls == {"a": _plans._FIRST_TIMINGS, "b": 0}


def test_the_others_compile_in_the_background_and_the_fastest_wins():
    race = Race("slow", ["slow", "quick"])
    calls, thunks = _counted({"slow": 0.003, "quick": 0.0})
    race.plan((), thunks)
    assert race.plan((), thunks) == "slow"  # second call: timed, the others start compiling
    race.wait(timeout=30)
    first = _plans._FIRST_TIMINGS
    assert calls == {"slow": first, "quick": 1}
    assert _race_until_decided(race, thunks) == "quick"
    assert calls == {"slow": first + _plans._ROUNDS, "quick": 1 + _plans._ROUNDS}
    assert race.plan((), thunks) == "quick"
    assert calls["quick"] == 1 + _plans._ROUNDS  # decided: no more timing


def _answering(plans: dict):
    """Thunks whose plans take ``(seconds, answer)`` each, the answer as a program's."""

    def thunk(seconds, answer):
        def run():
            time.sleep(seconds)
            return answer

        return run

    runs = {name: thunk(*p) for name, p in plans.items()}
    return lambda args: runs


def test_a_plan_faster_only_within_noise_leaves_the_default():
    # A choice made by noise would differ from run to run, and with it the rounding.
    race = Race("slow", ["slow", "quick"])
    answer = jnp.array([1.0, 2.0])
    thunks = _answering({"slow": (0.004, answer), "quick": (0.0036, answer)})
    assert _race_until_decided(race, thunks) == "slow"


def test_a_plan_that_rounds_otherwise_is_left_out_however_fast():
    # Equal in exact arithmetic, not in the last bit: switching would move a sampler's path.
    race = Race("slow", ["slow", "quick"])
    one = np.float64(1.0)
    thunks = _answering(
        {"slow": (0.003, jnp.array([one])), "quick": (0.0, jnp.array([one + 2e-16]))}
    )
    assert _race_until_decided(race, thunks) == "slow"
    same = _answering({"slow": (0.003, jnp.array([one])), "quick": (0.0, jnp.array([one]))})
    assert _race_until_decided(Race("slow", ["slow", "quick"]), same) == "quick"


def test_a_plan_that_cannot_run_is_left_out():
    race = Race("slow", ["slow", "broken"])
    _, thunks = _counted({"slow": 0.003, "broken": RuntimeError("no")})
    assert _race_until_decided(race, thunks) == "slow"


def test_time_plans_off_keeps_the_default_untimed(monkeypatch):
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")
    race = Race("slow", ["slow", "quick"])
    calls, thunks = _counted({"slow": 0.003, "quick": 0.0})
    assert _race_until_decided(race, thunks) == "slow"
    assert calls == {"slow": 0, "quick": 0}


def test_a_choice_made_before_is_not_timed_again():
    race = Race("slow", ["slow", "quick"], winner="quick")
    calls, thunks = _counted({"slow": 0.003, "quick": 0.0})
    assert race.plan((), thunks) == "quick" and calls == {"slow": 0, "quick": 0}


@pytest.mark.parametrize("mode", [C_ONLY, None], ids=["our Op", "absorbed"])
def test_the_first_call_compiles_one_program_before_answering(mode):
    x = pt.vector("x", shape=(2,))
    f = pytensor.function([x], [_cost(x), pt.grad(_cost(x), x)], mode=mode)
    assert any(isinstance(n.op, XlaGraphOp) for n in f.maker.fgraph.apply_nodes) == (mode is None)
    clear_caches()
    jax.clear_caches()
    xv = np.array([0.7, -0.4])
    with Compiled() as compiled:
        f(xv)
    assert len(compiled.names) == 1, compiled.names


def _cost(x):
    # A Potential-like cost on a wrapped function (a custom VJP counting its passes).
    return pt.sum(trajectory(x, T)) + pt.sum(pt.exp(x)) - pt.log(pt.sum(x**2)) + pt.sum(x**3)


@pytest.mark.parametrize(
    ("seconds", "winner", "passes"),
    [
        ({"fused": 1e-3, "two calls": 2e-4}, "two calls", {"forward": 2, "backward": 1}),
        ({"fused": 2e-4, "two calls": 1e-3}, "fused", {"forward": 1, "backward": 1}),
    ],
    ids=["two calls faster", "fused faster"],
)
def test_an_absorbed_graph_takes_the_plan_timed_faster(monkeypatch, seconds, winner, passes):
    # Fused, the absorbed program runs the wrapped function's forward pass once (inside its
    # value-and-grad); as two calls, a plain forward pass and a gradient-only pass. The
    # timings are forced; the passes counted inside the program show which plan runs.
    monkeypatch.setattr(Race, "_time", lambda self, name, run: (run(), seconds[name])[1])
    monkeypatch.setattr(_plans, "MEASURE_ABOVE_S", 0.0)  # raced however fast it runs here
    x = pt.vector("x", shape=(2,))
    f = pytensor.function([x], [_cost(x), pt.grad(_cost(x), x)])
    (node,) = f.maker.fgraph.apply_nodes
    assert isinstance(node.op, XlaGraphOp)
    xv = np.array([0.7, -0.4])
    PASSES.update(forward=0, backward=0)
    want = f(xv)
    assert PASSES == {"forward": 1, "backward": 1}  # the first answer: the fused plan alone
    f(xv)
    race = node.op._race()
    race.wait(timeout=120)
    for _ in range(_plans._ROUNDS):
        f(xv)
    assert race.winner == winner
    PASSES.update(forward=0, backward=0)
    got = f(xv)
    assert passes == PASSES
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_a_likelihood_on_an_absorbed_output_runs_two_calls_when_faster(monkeypatch, rng):
    # pm.Normal(mu=f(x)): the graph holds a forward pass keeping residuals and a backward
    # pass; as two calls, the backward pass is a gradient-only call from the primals.
    from tests.test_residuals import _data, _model, _reference_logp

    seconds = {"fused": 1e-3, "two calls": 2e-4}
    monkeypatch.setattr(Race, "_time", lambda self, name, run: (run(), seconds[name])[1])
    monkeypatch.setattr(_plans, "MEASURE_ABOVE_S", 0.0)  # raced however fast it runs here
    data = _data(rng)
    fn = _model(data).logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    (node,) = fn._pytensor_function.maker.fgraph.apply_nodes
    xv = np.array([0.9, 1.1, np.log(0.3)])
    for _ in range(2):
        fn(xv)
    node.op._race().wait(timeout=120)
    for _ in range(_plans._ROUNDS):
        fn(xv)
    assert node.op._race().winner == "two calls"
    PASSES.update(forward=0, backward=0)
    value, grad = fn(xv)
    assert PASSES == {"forward": 2, "backward": 1}
    want_value, want_grad = jax.value_and_grad(_reference_logp)(xv, data)
    np.testing.assert_allclose(value, want_value, rtol=1e-8)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8)


_STEPS = 6
_SCAN_STEPS = {"n": 0}


def _step_taken():
    _SCAN_STEPS["n"] += 1


@as_pytensor_op
def _scan_loglik(theta, xs):
    # A lax.scan likelihood (an HMM-style filter) counting its forward steps.
    def step(carry, x):
        jax.debug.callback(_step_taken)
        carry = 0.9 * carry + jnp.sin(theta[0] * x) * theta[1]
        return carry, carry**2

    _, terms = jax.lax.scan(step, 0.0, xs)
    return -jnp.sum(terms)


@pytest.mark.parametrize(
    ("seconds", "winner", "passes"),  # passes: plain forward scans beyond the fused plan's
    [
        ({"fused": 1e-3, "two calls": 2e-4}, "two calls", 1),
        ({"fused": 2e-4, "two calls": 1e-3}, "fused", 0),
    ],
    ids=["forward + VJP faster", "fused faster"],
)
def test_an_absorbed_scan_graph_runs_the_plan_timed_faster(monkeypatch, seconds, winner, passes):
    # As forward + gradient-only VJP, the program runs one more plain forward scan than
    # fused (inside the value-and-grad; JAX may emit the differentiated scan's callbacks
    # otherwise): the steps counted inside the program show the plan.
    monkeypatch.setattr(Race, "_time", lambda self, name, run: (run(), seconds[name])[1])
    monkeypatch.setattr(_plans, "MEASURE_ABOVE_S", 0.0)  # raced however fast it runs here
    theta = pt.vector("theta", shape=(2,))
    xs = np.linspace(0.1, 1.0, _STEPS)
    cost = _scan_loglik(theta, xs) + pt.sum(pt.exp(theta)) - pt.log(pt.sum(theta**2))
    f = pytensor.function([theta], [cost, pt.grad(cost, theta)])
    (node,) = f.maker.fgraph.apply_nodes
    assert isinstance(node.op, XlaGraphOp)
    tv = np.array([0.7, 1.3])
    _SCAN_STEPS["n"] = 0
    want = f(tv)  # the first answer: fused
    fused_steps = _SCAN_STEPS["n"]
    f(tv)
    node.op._race().wait(timeout=120)
    for _ in range(_plans._ROUNDS):
        f(tv)
    assert node.op._race().winner == winner
    _SCAN_STEPS["n"] = 0
    got = f(tv)
    assert _SCAN_STEPS["n"] == fused_steps + passes * _STEPS
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
