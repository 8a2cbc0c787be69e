"""The rewrite that runs a whole JAX-capable graph as one XLA call on the C and Numba backends."""

import gc
import json
import pickle
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_default_mode, get_mode
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant
from pytensor.raise_op import Assert
from pytensor.scalar.basic import Composite

from pymc_jaxops import _jit, _programs, as_pytensor_op
from pymc_jaxops._absorb import TAG, XlaGraphOp
from tests._compiles import Compiled
from tests._subprocess import child_env, run_python
from tests.test_residuals import PASSES, T, _data, _model, _reference_logp, trajectory

C_ONLY = get_default_mode().excluding(TAG)
X = np.array([0.9, 1.1, np.log(0.3)])


def _ops(fn):
    return [type(n.op) for n in fn.maker.fgraph.apply_nodes]


def _logp_dlogp(model, mode=None):
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    return fn


def test_model_graph_becomes_one_xla_call_with_one_forward_and_backward(rng, monkeypatch):
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")  # no timed plans
    data = _data(rng)
    fn = _logp_dlogp(_model(data))  # PyMC's default mode, as pm.sample() compiles it
    assert _ops(fn._pytensor_function) == [XlaGraphOp]
    fn(X)
    PASSES.update(forward=0, backward=0)
    value, grad = fn(X)
    assert PASSES == {"forward": 1, "backward": 1}
    want_value, want_grad = jax.value_and_grad(_reference_logp)(X, data)
    np.testing.assert_allclose(value, want_value, rtol=1e-8)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8)


def test_switched_off_by_excluding_the_tag_with_the_same_numbers(rng):
    model = _model(_data(rng))
    plain, absorbed = _logp_dlogp(model, C_ONLY), _logp_dlogp(model)
    assert XlaGraphOp not in _ops(plain._pytensor_function)
    for got, want in zip(absorbed(X), plain(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_switched_off_for_the_process_by_pytensor_flags():
    code = (
        "import jax.numpy as jnp, pytensor, pytensor.tensor as pt\n"
        "from pymc_jaxops import as_pytensor_op\n"
        "x = pt.vector('x')\n"
        "c = pt.sum((as_pytensor_op(jnp.tanh)(x) - 0.5) ** 2) + pt.sum(pt.exp(x))\n"
        "f = pytensor.function([x], [c, pt.grad(c, x)])\n"
        "print(sorted({type(n.op).__name__ for n in f.maker.fgraph.apply_nodes}))\n"
    )
    flags = "optimizer_excluding=pymc_jaxops_absorb"
    proc = run_python(["-c", code], timeout=120, env=child_env(PYTENSOR_FLAGS=flags))
    assert proc.returncode == 0, proc.stderr
    assert "XlaGraphOp" not in proc.stdout and "JaxForwardOp" in proc.stdout


def test_parameter_checks_still_give_minus_inf():
    # PyMC's compile turns the sigma > 0 check into switch(-inf) before the absorption, so the
    # absorbed graph keeps it (JAX would skip a Check node).
    f = as_pytensor_op(lambda th: jnp.stack([th, 2 * th]))
    with pm.Model() as model:
        theta = pm.Normal("theta")
        sigma = pm.Normal("sigma")  # untransformed: negative values reach the check
        pm.Normal("y", mu=f(theta), sigma=sigma, observed=np.array([0.1, 0.3]))
    absorbed = model.compile_logp()
    plain = model.compile_logp(mode=C_ONLY)
    assert _ops(absorbed.f) == [XlaGraphOp]
    for point in ({"theta": 0.2, "sigma": -1.0}, {"theta": 0.2, "sigma": 0.7}):
        np.testing.assert_allclose(absorbed(point), plain(point), rtol=1e-12)
    assert absorbed({"theta": 0.2, "sigma": -1.0}) == -np.inf


def test_a_graph_with_an_assert_keeps_c_semantics():
    x = pt.vector("x")
    y = as_pytensor_op(lambda v: v * 2.0)(x)
    checked = Assert("x must be positive")(pt.sum(y**2) + pt.sum(pt.exp(x)), pt.all(x > 0))
    f = pytensor.function([x], [checked, pt.grad(checked, x)])
    assert XlaGraphOp not in _ops(f)
    with pytest.raises(AssertionError, match="x must be positive"):
        f(np.array([-1.0, 2.0]))


@pytest.mark.parametrize("floatx", ["float64", "float32"])
def test_runs_in_the_precision_of_its_types_whatever_the_x64_switch(floatx):
    x = pt.vector("x", dtype=floatx)
    y = as_pytensor_op(jnp.sin)(x)
    cost = pt.sum(y**2) + pt.sum(pt.exp(x)) - pt.log(pt.sum(x**2))
    outputs = [cost, pt.grad(cost, x)]
    absorbed, plain = pytensor.function([x], outputs), pytensor.function([x], outputs, mode=C_ONLY)
    assert _ops(absorbed) == [XlaGraphOp]
    value = np.array([0.1, -0.7, 1.3], dtype=floatx)
    jax.config.update("jax_enable_x64", False)  # the conftest fixture turns it back on
    got = absorbed(value)
    want = plain(value)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype == np.dtype(floatx)
        np.testing.assert_allclose(g, w, rtol=1e-12 if floatx == "float64" else 1e-5)


def test_untraceable_graph_falls_back_to_the_c_backend():
    # A reshape to a size known only at run time cannot be traced by jax.jit.
    x, n = pt.vector("x"), pt.lscalar("n")
    y = as_pytensor_op(lambda v: v * 2.0)(x)
    out = pt.sum(pt.exp(pt.reshape(y, (n, -1))) ** 2, axis=1)
    f = pytensor.function([x, n], out)
    assert _ops(f) == [XlaGraphOp]
    xv = np.arange(6.0) / 10
    np.testing.assert_allclose(f(xv, 2), np.exp(2 * xv.reshape(2, 3)).__pow__(2).sum(1))
    (node,) = f.maker.fgraph.apply_nodes
    assert "_fallback" in node.op.__dict__


def test_absorbed_function_pickles(rng):
    fn = _logp_dlogp(_model(_data(rng)))._pytensor_function
    want = fn(X)
    for got, w in zip(pickle.loads(pickle.dumps(fn))(X), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-14)


@pytest.mark.parametrize("mode", ["CVM", "NUMBA", None])
def test_an_index_known_only_at_run_time_keeps_c_semantics(mode):
    # JAX clamps an out-of-range index where the C backend raises IndexError. Either way
    # the graph is left on its own backend; the C backend's error is asserted here.
    f = as_pytensor_op(lambda v: 2.0 * v)
    with pm.Model() as model:
        idx = pm.Data("idx", np.array([0, 1, 1]))
        a = pm.Normal("a", size=2)
        pm.Normal("y", mu=f(a)[idx], observed=np.array([0.1, 0.2, 0.3]))
    fn = _logp_dlogp(model, mode)
    assert XlaGraphOp not in _ops(fn._pytensor_function)
    with model:
        pm.set_data({"idx": np.array([0, 1, 5])})
    if mode == "CVM":
        with pytest.raises(IndexError):
            fn(np.zeros(2))


def test_the_op_keeps_no_shared_data(rng):
    with pm.Model() as model:
        obs = pm.Data("obs", _data(rng))
        theta = pm.Normal("theta", 0.5, 1.0, size=2)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", mu=trajectory(theta, T), sigma=sigma, observed=obs)
    fn = _logp_dlogp(model)
    (node,) = fn._pytensor_function.maker.fgraph.apply_nodes
    stored = [*node.op.inner_inputs, *node.op.fallback_inputs]
    assert not any(isinstance(v, SharedVariable) for v in stored)
    want = _logp_dlogp(model, C_ONLY)(X)
    for got, w in zip(fn(X), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_array_constants_reach_the_device_and_elementwise_nodes_stay_unfused(rng):
    # XLA fuses elementwise loops itself, and jnp.array(constant) would compile a program
    # per shape: neither is paid when the graph is built.
    data = _data(rng)
    model = _model(data)
    jax.clear_caches()
    with Compiled() as compiled:
        fn = _logp_dlogp(model)
    assert compiled.staged == 0
    (node,) = fn._pytensor_function.maker.fgraph.apply_nodes
    inner = node.op.fgraph
    scalar_ops = [getattr(n.op, "scalar_op", None) for n in inner.apply_nodes]
    assert not any(isinstance(op, Composite) for op in scalar_ops)
    constants = [v for v in inner.variables if isinstance(v, Constant) and v.data.ndim > 0]
    assert constants, "the observed data is a constant of the graph"
    want = _logp_dlogp(_model(data), C_ONLY)(X)
    for got, w in zip(fn(X), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_logp_and_gradient_leave_xla_in_one_buffer_as_separate_writable_arrays(rng):
    model = _model(_data(rng))
    fn = _logp_dlogp(model)
    (node,) = fn._pytensor_function.maker.fgraph.apply_nodes
    assert node.op._layout == ((0, 1, ()), (1, 4, None))  # logp, then the raveled gradient (1-D)
    value, grad = fn(X)
    want_value, want_grad = _logp_dlogp(model, C_ONLY)(X)
    assert (value.shape, grad.shape) == ((), (3,))
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)
    assert value.flags.writeable and grad.flags.writeable
    grad[:] = 0.0  # a caller writing into one output changes neither the other nor the next
    value[...] = 0.0
    np.testing.assert_allclose(fn(X)[1], want_grad, rtol=1e-12)
    assert float(fn(X)[0]) == pytest.approx(float(want_value), rel=1e-12)


@pytest.mark.parametrize(
    "case",
    ["mixed dtypes", "shape known at run time", "one output"],
)
def test_outputs_that_cannot_share_a_buffer_leave_one_by_one(case):
    x = pt.vector("x", shape=(3,))
    y = as_pytensor_op(lambda v: jnp.sin(v))(x)
    cost = pt.sum(y**2) + pt.sum(pt.exp(x)) - pt.log(pt.sum(x**2))
    if case == "mixed dtypes":
        outputs, inputs = [cost, pt.argmax(y)], [x]
    elif case == "shape known at run time":
        v = pt.vector("v")  # the gradient's length is v's: unknown until called
        w = as_pytensor_op(lambda a: jnp.sin(a))(v)
        c = pt.sum(w**2) + pt.sum(pt.exp(v)) - pt.log(pt.sum(v**2))
        outputs, inputs = [c, pt.grad(c, v)], [v]
    else:
        outputs, inputs = [pt.grad(cost, x)], [x]
    absorbed = pytensor.function(inputs, outputs)
    plain = pytensor.function(inputs, outputs, mode=C_ONLY)
    (node,) = absorbed.maker.fgraph.apply_nodes
    assert isinstance(node.op, XlaGraphOp) and node.op._layout is None
    value = np.array([0.1, -0.7, 1.3])
    got, want = absorbed(value), plain(value)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.flags.writeable
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("mode", ["NUMBA", "CVM", None])
def test_numba_and_c_enter_python_once_per_logp_dlogp(rng, monkeypatch, mode):
    # pytensor 3's default linker is Numba: the absorbed graph is one node, and the compiled
    # function crosses into Python once per evaluation, to launch the XLA executable.
    calls = []
    outputs_of = XlaGraphOp.outputs_of  # what both backends' single call runs

    def counting(self, inputs):
        calls.append(1)
        return outputs_of(self, inputs)

    monkeypatch.setattr(XlaGraphOp, "outputs_of", counting)
    model = _model(_data(rng))
    fn = _logp_dlogp(model, mode)
    assert _ops(fn._pytensor_function) == [XlaGraphOp]
    want = _logp_dlogp(model, get_mode("CVM").excluding(TAG))(X)
    for n in range(1, 4):
        got = fn(X)
        assert len(calls) == n
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-8)


def test_a_numba_graph_of_one_absorbed_node_launches_xla_without_numba(rng):
    # Numba's function would only enter Python again to launch XLA: PyTensor's thunk calls
    # the Op itself (5-10 µs less per call), and the Numba function, compiled only when
    # first called, is still there for callers that need one (nutpie's Numba backend).
    model = _model(_data(rng))
    fn = _logp_dlogp(model, "NUMBA")
    compiled = fn._pytensor_function
    assert _ops(compiled) == [XlaGraphOp]
    value, grad = fn(X)
    jit_fn = compiled.vm.jit_fn
    assert jit_fn.signatures == []  # Numba did not run
    numba_value, numba_grad = jit_fn(X)
    assert numba_value == value and np.array_equal(numba_grad, grad)
    want = _logp_dlogp(model, get_mode("CVM").excluding(TAG))(X)
    np.testing.assert_allclose(value, want[0], rtol=1e-10)
    np.testing.assert_allclose(grad, want[1], rtol=1e-8)


_COMPILE_AND_CALL = """
import json, numpy as np
from numba.core import event
from numba.core.dispatcher import ObjModeLiftedWith
from tests.test_residuals import _data, _model
model = _model(_data(np.random.default_rng(0)))
with event.install_recorder("numba:compile") as compiled:
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
    fn.set_extra_values({})
    # As nutpie's Numba backend calls it (PyTensor's own thunk launches XLA from Python).
    value, grad = fn._pytensor_function.vm.jit_fn(np.array([0.9, 1.1, np.log(0.3)]))
ops = sorted({type(n.op).__name__ for n in fn._pytensor_function.maker.fgraph.apply_nodes})
# Numba builds the object-mode block's wrapper on load: Python calls, nothing to cache.
nopython = [e for _, e in compiled.buffer if e.is_start
            and not isinstance(e.data["dispatcher"], ObjModeLiftedWith)]
print(json.dumps({"compiled": len(nopython), "ops": ops, "value": float(value)}))
"""


def test_a_second_process_loads_the_numba_graph_from_disk(tmp_path):
    # The absorbed graph's Numba code names the XLA graph by a key that is the same in every
    # process building the same model, so PyTensor's Numba cache serves a chain worker or a
    # new session: no Numba compilation at all the second time.
    env = child_env(PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")
    runs = []
    for _ in range(2):
        proc = run_python(["-c", _COMPILE_AND_CALL], timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["ops"] == second["ops"] == ["XlaGraphOp"]
    assert first["compiled"] > 0  # a cold cache compiles
    assert second["compiled"] == 0
    assert second["value"] == first["value"]


def _cost_of(x):
    return pt.sum(as_pytensor_op(jnp.sin)(x) ** 2) + pt.sum(pt.exp(x)) - pt.log(pt.sum(x**2))


def test_an_absorbed_graphs_program_goes_a_while_after_the_last_function_that_runs_it(rng):
    # Each pm.sample compiles the model again, into a new absorbed Op; its XLA program must
    # not outlive the functions that hold it for long (memory grew with every call before):
    # it is kept for the next few other programs' lifetimes (an equal graph built again
    # reuses it), while a pickled copy of the function keeps it as long as it lives.
    fn = _logp_dlogp(_model(_data(rng)))._pytensor_function
    fn(X)
    (node,) = fn.maker.fgraph.apply_nodes
    graph_fn, mode = node.op.__dict__["_run"]["fused"]
    program = weakref.ref(graph_fn)
    assert (graph_fn, mode) in _jit._JIT_CACHE
    copy = pickle.loads(pickle.dumps(fn))
    copy(X)
    del fn, node, graph_fn
    gc.collect()
    assert program() is not None  # the copy still runs it
    del copy
    gc.collect()
    # A collected Op's release is handled when the next absorbed graph first runs (as the
    # next pm.sample's does): its finalizer may run where locks are held, so it only queues.
    for k in range(_programs._KEEP + 1):
        assert program() is not None  # kept: released, but among the last few
        other = pytensor.function([x := pt.vector("x")], _cost_of(x) * (k + 2.0))
        other(np.ones(3))
        del other
        gc.collect()
    other = pytensor.function([x := pt.vector("x")], _cost_of(x))
    other(np.ones(3))
    assert program() is None
