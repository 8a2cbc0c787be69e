"""One forward and one backward pass when a PyMC likelihood consumes a wrapped output."""

import pickle
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from jax.scipy.stats import norm
from pytensor.compile.mode import get_mode
from pytensor.gradient import hessian, verify_grad
from pytensor.graph.replace import vectorize_graph

from pymc_jaxops import as_pytensor_op, clear_caches
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops._residuals import JaxBackwardOp, JaxForwardOp
from tests import _subprocess

PASSES = {"forward": 0, "backward": 0}
# These tests look at the Ops in the C VM's graph: the whole-graph XLA rewrite off.
# The C and Numba backends with the whole-graph XLA rewrite off, to see the Ops they run.
C_VM = get_mode("CVM").excluding("pymc_jaxops_absorb")
NUMBA = get_mode("NUMBA").excluding("pymc_jaxops_absorb")
T = np.linspace(0.0, 2.0, 7)


def _count(which):
    def bump():
        PASSES[which] += 1

    return bump


def _curve_math(theta, t):
    return jnp.stack([jnp.sin(theta[0] * t), theta[1] * jnp.exp(-theta[0] * t)], axis=-1)


@jax.custom_vjp
def _curve(theta, t):
    # Counted whether it runs plainly or as the forward half of a VJP.
    jax.debug.callback(_count("forward"))
    return _curve_math(theta, t)


def _curve_fwd(theta, t):
    return _curve.fun(theta, t), (theta, t)


def _curve_bwd(res, g):
    jax.debug.callback(_count("backward"))
    theta, t = res
    _, vjp = jax.vjp(lambda th: _curve_math(th, t), theta)
    return (*vjp(g), jnp.zeros_like(t))


_curve.defvjp(_curve_fwd, _curve_bwd)


@as_pytensor_op
def trajectory(theta, t):
    """A mean trajectory whose forward and backward passes each bump a counter when run."""
    return _curve(theta, t)


def _model(data, t=T):
    with pm.Model() as model:
        theta = pm.Normal("theta", 0.5, 1.0, size=2)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", mu=trajectory(theta, t), sigma=sigma, observed=data)
    return model


def _reference_logp(x, data, t=T):
    """The same model's joint log density on the unconstrained point, in plain JAX."""
    theta, log_sigma = x[:2], x[2]
    sigma = jnp.exp(log_sigma)
    mu = _curve_math(theta, t)
    return (
        jnp.sum(norm.logpdf(theta, 0.5, 1.0))
        + jnp.log(2.0) + norm.logpdf(sigma, 0.0, 1.0) + log_sigma
        + jnp.sum(norm.logpdf(data, mu, sigma))
    )  # fmt: skip


def _data(rng, t=T):
    return np.asarray(_curve_math(jnp.array([1.3, 0.8]), t)) + 0.1 * rng.normal(size=(len(t), 2))


def _jax_nodes(f):
    return [n.op for n in f.maker.fgraph.apply_nodes if isinstance(n.op, JaxOp)]


@pytest.mark.parametrize("mode", [C_VM, NUMBA, "JAX"], ids=["C", "NUMBA", "JAX"])
def test_normal_likelihood_on_output_runs_one_forward_and_one_backward_pass(
    rng, mode, monkeypatch
):
    # Plan timing off: on a busy machine it may rightly pick the two-call plan.
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")
    data = _data(rng)
    fn = _model(data).logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    if mode != "JAX":
        assert sorted(type(op).__name__ for op in _jax_nodes(fn._pytensor_function)) == [
            "JaxBackwardOp",
            "JaxForwardOp",
        ]
    x = np.array([0.9, 1.1, np.log(0.3)])
    fn(x)  # compile
    PASSES.update(forward=0, backward=0)
    value, grad = fn(x)
    assert PASSES == {"forward": 1, "backward": 1}
    want_value, want_grad = jax.value_and_grad(_reference_logp)(x, data)
    np.testing.assert_allclose(value, want_value, rtol=1e-8)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8)


TRACES = {"n": 0}


@as_pytensor_op
def traced_trajectory(theta, t):
    """``_curve_math``, counting how often JAX traces it (a Python side effect)."""
    TRACES["n"] += 1
    return _curve_math(theta, t)


@pytest.mark.parametrize("mode", [None, C_VM, "JAX"], ids=["absorbed", "C", "JAX"])
def test_the_function_is_traced_once_from_model_to_first_gradient(rng, mode, monkeypatch):
    """As a pure-JAX ``value_and_grad`` traces it once: the output types, the forward pass
    keeping residuals, the backward pass and the whole program reuse one trace (a diffrax
    solve's trace took most of a second)."""
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")  # no other plan traced meanwhile
    data = _data(rng)
    clear_caches()  # a model built before (another parametrization) kept its trace alive
    jax.clear_caches()
    TRACES["n"] = 0
    with pm.Model() as model:
        theta = pm.Normal("theta", 0.5, 1.0, size=2)
        pm.Normal("y", mu=traced_trajectory(theta, T), sigma=0.2, observed=data)
    fn = model.logp_dlogp_function(ravel_inputs=True, **({"mode": mode} if mode else {}))
    fn.set_extra_values({})
    value, grad = fn(np.array([0.9, 1.1]))
    assert TRACES["n"] == 1
    with pm.Model() as reference:
        theta = pm.Normal("theta", 0.5, 1.0, size=2)
        pm.Normal("y", mu=trajectory(theta, T), sigma=0.2, observed=data)
    want = reference.logp_dlogp_function(ravel_inputs=True, mode=C_VM)
    want.set_extra_values({})
    want_value, want_grad = want(np.array([0.9, 1.1]))
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


def test_split_changes_no_number(rng):
    # The two-call plan (rewrite excluded) and the split plan give the same numbers.
    x = pt.vector("x", shape=(2,))
    data = _data(rng)
    y = trajectory(x, T)
    cost = -pt.sum((data - y) ** 2) + pt.log(pt.sum(y**2))
    outs = [cost, pt.grad(cost, x)]
    split = pytensor.function([x], outs, mode=C_VM)
    plain = pytensor.function([x], outs, mode=C_VM.excluding("pymc_jaxops_fuse_value_and_grad"))
    assert {type(op) for op in _jax_nodes(split)} == {JaxForwardOp, JaxBackwardOp}
    assert {type(op) for op in _jax_nodes(plain)} == {JaxOp, JaxValueAndGradOp}
    xv = np.array([0.7, -0.4])
    for got, want in zip(split(xv), plain(xv), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_gradient_matches_finite_differences(rng):
    data = _data(rng)
    verify_grad(
        lambda x: pt.sum(pt.log(1.0 + (data - trajectory(x, T)) ** 2)),
        [np.array([0.7, -0.4])],
        rng=rng,
    )


def test_hessian_of_likelihood_on_output_equals_jax(rng):
    data = _data(rng)
    x = pt.vector("x", shape=(2,))
    cost = -0.5 * pt.sum((data - trajectory(x, T)) ** 2)
    f = pytensor.function([x], [cost, pt.grad(cost, x), hessian(cost, x)], mode=C_VM)
    assert any(isinstance(op, JaxForwardOp) for op in _jax_nodes(f))

    def ref(x):
        return -0.5 * jnp.sum((data - _curve_math(x, T)) ** 2)

    xv = np.array([0.7, -0.4])
    value, grad, hess = f(xv)
    np.testing.assert_allclose(value, ref(xv), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(ref)(xv), rtol=1e-12)
    np.testing.assert_allclose(hess, jax.hessian(ref)(xv), rtol=1e-10)


def test_set_data_with_new_length(rng):
    data = _data(rng)
    with pm.Model() as model:
        t = pm.Data("t", T)
        obs = pm.Data("obs", data)
        theta = pm.Normal("theta", 0.5, 1.0, size=2)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", mu=trajectory(theta, t), sigma=sigma, observed=obs, shape=obs.shape)
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    x = np.array([0.9, 1.1, np.log(0.3)])
    t_new = np.linspace(0.0, 3.0, 11)
    data_new = _data(rng, t_new)
    with model:
        pm.set_data({"t": t_new, "obs": data_new})
    value, grad = fn(x)
    want_value, want_grad = jax.value_and_grad(_reference_logp)(x, data_new, t_new)
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)


@pytest.mark.parametrize("mode", [C_VM, None, "JAX"], ids=["C", "absorbed", "JAX"])
def test_vectorized_likelihood_on_output(rng, mode, monkeypatch):
    # The vectorized value-and-grad pairs with the vectorized forward pass: one of each.
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")
    data = _data(rng)
    x = pt.vector("x", shape=(2,))
    cost = -0.5 * pt.sum((data - trajectory(x, T)) ** 2)
    xs = pt.matrix("xs", shape=(4, 2))
    batched = vectorize_graph([cost, pt.grad(cost, x)], {x: xs})
    f = pytensor.function([xs], batched, mode=mode)
    xv = rng.normal(size=(4, 2))
    f(xv)
    PASSES.update(forward=0, backward=0)
    values, grads = f(xv)
    assert PASSES == {"forward": 1, "backward": 1}

    def ref(x):
        return -0.5 * jnp.sum((data - _curve_math(x, T)) ** 2)

    want_v, want_g = jax.vmap(jax.value_and_grad(ref))(xv)
    np.testing.assert_allclose(values, want_v, rtol=1e-12)
    np.testing.assert_allclose(grads, want_g, rtol=1e-12)


def test_float32_output_feeding_float64_likelihood(rng):
    @as_pytensor_op
    def f32(x):
        return jnp.tanh(x) * 2

    data = rng.normal(size=5)
    x = pt.vector("x", dtype="float32", shape=(5,))
    y = f32(x)
    assert y.dtype == "float32"
    cost = -0.5 * pt.sum((data - y.astype("float64")) ** 2)
    f = pytensor.function([x], [cost, pt.grad(cost, x)], mode=C_VM)
    assert JaxForwardOp in {type(op) for op in _jax_nodes(f)}
    xv = rng.normal(size=5).astype("float32")
    _value, grad = f(xv)
    assert grad.dtype == np.float32
    want = jax.grad(lambda x: -0.5 * jnp.sum((data - jnp.tanh(x) * 2) ** 2))(xv)
    np.testing.assert_allclose(grad, want, rtol=1e-5)


_LOAD = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    with open(sys.argv[1], "rb") as payload:
        fn = pickle.load(payload)
    value, grad = fn(np.array([0.9, 1.1, np.log(0.3)]))
    print(repr(float(value)), *map(repr, grad.tolist()))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [C_VM, None], ids=["C", "absorbed"])
def test_compiled_split_function_pickles_into_fresh_process(rng, mode):
    fn = _model(_data(rng)).logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    compiled = fn._pytensor_function
    if mode is C_VM:
        assert JaxForwardOp in {type(op) for op in _jax_nodes(compiled)}
    value, grad = compiled(np.array([0.9, 1.1, np.log(0.3)]))
    out = _subprocess.run_python_with_payload(_LOAD, pickle.dumps(compiled), timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    got = [float(v) for v in out.stdout.split()]
    np.testing.assert_allclose(got, [value, *grad], rtol=1e-12)


def _force_plan(monkeypatch, name):
    """Every race made from now on starts with ``name`` chosen, as if timed before."""
    from pymc_jaxops import _plans

    original = _plans.Race.__init__

    def init(self, default, names, winner=None):
        original(self, default, names, name if name in names else winner)

    monkeypatch.setattr(_plans.Race, "__init__", init)


def test_two_call_plan_when_timed_faster(rng, monkeypatch):
    # Force the timing to prefer "forward now, fused value-and-grad later": same numbers.
    _force_plan(monkeypatch, "two calls")
    data = _data(rng)
    x = pt.vector("x", shape=(2,))
    cost = -0.5 * pt.sum((data - trajectory(x, T)) ** 2)
    f = pytensor.function([x], [cost, pt.grad(cost, x)], mode=C_VM)
    xv = np.array([0.7, -0.4])
    f(xv)
    PASSES.update(forward=0, backward=0)
    value, grad = f(xv)
    assert PASSES == {"forward": 2, "backward": 1}

    def ref(x):
        return -0.5 * jnp.sum((data - _curve_math(x, T)) ** 2)

    np.testing.assert_allclose(value, ref(xv), rtol=1e-13)
    np.testing.assert_allclose(grad, jax.grad(ref)(xv), rtol=1e-13)


def _fresh_runtime(op):
    # Ops are shared values: forget what an earlier test chose and built.
    op.__dict__.pop("_runtime", None)
    op.__dict__.pop("_chosen", None)


def test_linear_consumer_split_plan_when_timed_faster(rng, monkeypatch):
    # A Potential-like cost fuses into one value-and-grad node; if the split is measured
    # faster, that node runs forward + backward passes instead, with the same numbers.
    x = pt.vector("x", shape=(2,))
    cost = pt.sum(trajectory(x, T))
    outs = [cost, pt.grad(cost, x)]
    fused = pytensor.function([x], outs)
    xv = np.array([0.7, -0.4])
    want = fused(xv)
    _force_plan(monkeypatch, "split")
    split = pytensor.function([x], outs)
    assert [type(op) for op in _jax_nodes(split)] == [JaxValueAndGradOp]
    (node,) = [n for n in split.maker.fgraph.apply_nodes if isinstance(n.op, JaxOp)]
    _fresh_runtime(node.op)
    PASSES.update(forward=0, backward=0)
    got = split(xv)
    assert PASSES == {"forward": 1, "backward": 1}
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-13)
    assert list(node.op.chosen.values()) == ["split"]


def test_chosen_plan_travels_only_to_processes_on_this_machine(monkeypatch):
    # A chain process gets the parent's choice with the Op and compiles only that plan;
    # any other unpickling times the plans again (another machine may prefer another one).
    from pymc_jaxops import _plans
    from pymc_jaxops._ops import for_this_machine

    x = pt.vector("x", shape=(2,))
    cost = pt.sum(trajectory(x, T))
    _force_plan(monkeypatch, "split")
    f = pytensor.function([x], [cost, pt.grad(cost, x)])
    (node,) = [n for n in f.maker.fgraph.apply_nodes if isinstance(n.op, JaxOp)]
    _fresh_runtime(node.op)
    xv = np.array([0.7, -0.4])
    want = f(xv)
    assert list(node.op.chosen.values()) == ["split"]
    assert "_chosen" not in pickle.loads(pickle.dumps(node.op)).__dict__
    with for_this_machine():
        clone = pickle.loads(pickle.dumps(f))

    monkeypatch.undo()  # races start undecided again: the clone must bring its choice

    def timed_again(self, *args):
        raise AssertionError("the plans were timed again")

    monkeypatch.setattr(_plans.Race, "_step", timed_again)
    PASSES.update(forward=0, backward=0)
    got = clone(xv)
    assert PASSES == {"forward": 1, "backward": 1}  # the split plan ran
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-13)
