"""The one-call rewrite: fusion of forward into value-and-grad, and gradient narrowing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp


class Counter:
    """Counts how often the wrapped JAX function really runs (not how often it is traced)."""

    def __init__(self):
        self.n = 0

    def __call__(self, *_):
        self.n += 1


def counted(counter):
    @as_pytensor_op
    def f(x, a, data):
        jax.debug.callback(counter)
        return jnp.sum(a * jnp.sin(x) * data)

    return f


def _jax_nodes(f):
    return [n for n in f.maker.fgraph.apply_nodes if isinstance(n.op, JaxOp)]


def test_value_and_gradient_cost_one_call(monkeypatch):
    monkeypatch.setenv("PYMC_JAXOPS_TIME_PLANS", "off")  # the second call would time a plan
    counter = Counter()
    x, a = pt.vector("x", shape=(3,)), pt.scalar("a")
    out = counted(counter)(x, a, np.arange(3.0))
    f = pytensor.function([x, a], [out, *pt.grad(out, [x, a])])
    (node,) = _jax_nodes(f)
    assert isinstance(node.op, JaxValueAndGradOp)
    f(np.ones(3), 2.0)
    counter.n = 0
    for _ in range(5):
        f(np.ones(3), 2.0)
    assert counter.n == 5


def test_only_used_gradients_are_computed():
    x, a = pt.vector("x"), pt.scalar("a")
    out = counted(Counter())(x, a, pt.vector("data"))
    f = pytensor.function([x, a, out.owner.inputs[2]], [out, pt.grad(out, a)])
    (node,) = _jax_nodes(f)
    assert node.op.wrt_mask == (False, True, False)
    np.testing.assert_allclose(f(np.ones(3), 2.0, np.arange(3.0))[1], np.sin(1.0) * 3)


def test_value_and_grad_node_with_no_used_gradient_becomes_the_forward_op():
    x = pt.vector("x")
    forward = as_pytensor_op(lambda x: jnp.sum(x**2))(x)
    vg = JaxValueAndGradOp(forward.owner.op, (True,), (True,))
    value, _unused_grad = vg(x, pt.constant(np.array(1.0)))
    f = pytensor.function([x], value)
    (node,) = _jax_nodes(f)
    assert type(node.op) is JaxOp
    np.testing.assert_allclose(f(np.array([1.0, 2.0])), 5.0)


def test_cotangent_depending_on_forward_output_stays_correct(rng):
    # d log f(x) / dx needs f(x) to form the cotangent 1 / f(x): fusing would make a cycle.
    x = pt.vector("x")
    y = as_pytensor_op(lambda x: jnp.sum(jnp.exp(x)))(x)
    cost = pt.log(y)
    f = pytensor.function([x], [cost, pt.grad(cost, x)])
    xv = rng.normal(size=3)
    value, grad = f(xv)
    np.testing.assert_allclose(value, np.log(np.exp(xv).sum()))
    np.testing.assert_allclose(grad, np.exp(xv) / np.exp(xv).sum())


def test_rewrite_active_in_numba_and_jax_modes():
    x = pt.vector("x")
    out = as_pytensor_op(lambda x: jnp.sum(jnp.cos(x)))(x)
    for mode in ["NUMBA", "JAX"]:
        f = pytensor.function([x], [out, pt.grad(out, x)], mode=mode)
        nodes = _jax_nodes(f)
        assert len(nodes) == 1 and isinstance(nodes[0].op, JaxValueAndGradOp), mode
        _v, g = f(np.array([0.1, 0.2]))
        np.testing.assert_allclose(g, -np.sin([0.1, 0.2]))
