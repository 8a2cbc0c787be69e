"""``as_pytensor_op`` is a drop-in for ``pytensor.wrap_jax``: its documented usage patterns,
written afresh from PyTensor's docstring, run unchanged on both and give the same numbers.

The deliberate differences are tested last: unknown input dims are traced rather than
refused, a non-array output raises, and the Op is named after the function.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from pymc_jaxops import as_pytensor_op

WRAPPERS = {"pytensor.wrap_jax": pytensor.wrap_jax, "as_pytensor_op": as_pytensor_op}


@pytest.fixture(params=list(WRAPPERS))
def wrap_jax(request):
    """The user's ``from ... import wrap_jax`` line, in both versions."""
    return WRAPPERS[request.param]


def test_decorated_function_of_scalars(wrap_jax):
    @wrap_jax
    def add(x, y):
        return jnp.add(x, y)

    x, y = pt.scalar("x"), pt.scalar("y")
    f = pytensor.function([x, y], [add(x, y)])
    (got,) = f(1, 2)
    assert got.dtype == np.float64 and got == 3.0


def test_pytree_output_and_keyword_argument(wrap_jax):
    @wrap_jax
    def combine(x, y, scale=1.0):
        return {"sum": jnp.add(x, y) * scale, "parts": (x, y * scale)}

    x, y = pt.vector("x", shape=(3,)), pt.vector("y", shape=(3,))
    out = combine(x, y, scale=2.0)
    f = pytensor.function([x, y], [out["sum"], *out["parts"]])
    s, a, b = f(np.arange(3.0), np.ones(3))
    np.testing.assert_allclose(s, 2 * (np.arange(3.0) + 1))
    np.testing.assert_allclose(a, np.arange(3.0))
    np.testing.assert_allclose(b, 2 * np.ones(3))


def test_decorator_with_allow_eval_and_call_form(wrap_jax):
    @wrap_jax(allow_eval=True)
    def double(x):
        return 2 * x

    def square(x):
        return x**2

    x = pt.vector("x", shape=(2,))
    sq = wrap_jax(square, allow_eval=False)
    f = pytensor.function([x], [double(x), sq(x)])
    np.testing.assert_allclose(f([1.0, 3.0]), [[2.0, 6.0], [1.0, 9.0]])
    kw = wrap_jax(jax_function=square)
    np.testing.assert_allclose(kw(x).eval({x: [1.0, 3.0]}), [1.0, 9.0])


def test_gradient_through_the_wrapped_function(wrap_jax, rng):
    @wrap_jax
    def loglik(mu, sigma, data):
        return jnp.sum(jax.scipy.stats.norm.logpdf(data, mu, sigma))

    data = rng.normal(size=5)

    def cost(mu, sigma):
        return loglik(mu, sigma, pt.as_tensor(data))

    verify_grad(cost, [np.array(0.3), np.array(1.4)], rng=rng)


def test_equinox_module_holding_a_pytensor_variable(wrap_jax):
    mlp = eqx.nn.MLP(3, 3, 3, depth=2, activation=jnp.tanh, key=jax.random.key(0))
    x, b = pt.vector("x", shape=(3,)), pt.vector("b", shape=(3,))
    model = eqx.tree_at(lambda m: m.layers[0].bias, mlp, b)

    @wrap_jax
    def neural_network(x, mlp):
        return mlp(x)

    out = neural_network(x, model)
    xv, bv = np.array([0.1, -0.4, 0.7]), np.array([0.2, 0.0, -0.3])
    f = pytensor.function([x, b], [out, pt.grad(out.sum(), b)])
    value, grad = f(xv, bv)

    reference = eqx.tree_at(lambda m: m.layers[0].bias, mlp, jnp.asarray(bv))
    np.testing.assert_allclose(value, reference(xv), rtol=1e-6)
    want = jax.grad(lambda bias: eqx.tree_at(lambda m: m.layers[0].bias, mlp, bias)(xv).sum())
    np.testing.assert_allclose(grad, want(jnp.asarray(bv)), rtol=1e-6)


# Deliberate differences ---------------------------------------------------------------


def test_unknown_input_dims_are_traced_not_refused():
    def add(x, y):
        return jnp.add(x, y)

    x, y = pt.vector("x"), pt.vector("y")
    with pytest.raises(ValueError, match="specify_shape"):
        pytensor.wrap_jax(add)(x, y)
    for allow_eval in (True, False):
        out = as_pytensor_op(add, allow_eval=allow_eval)(x, y)
        assert out.type.shape == (None,)
        np.testing.assert_allclose(out.eval({x: [1.0, 2.0], y: [3.0, 4.0]}), [4.0, 6.0])


def test_allow_eval_false_never_evaluates_shapes():
    # JAX cannot decide `x.shape[0] > 3` for a symbolic dim; allow_eval evaluates the
    # shared variable's current length instead, as wrap_jax does.
    def head(x):
        return x[:3] if x.shape[0] > 3 else x

    data = pytensor.shared(np.arange(5.0))
    np.testing.assert_allclose(as_pytensor_op(head)(data).eval(), [0.0, 1.0, 2.0])
    np.testing.assert_allclose(pytensor.wrap_jax(head)(data).eval(), [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match=r"(?s)'head'.*pt\.specify_shape"):
        as_pytensor_op(head, allow_eval=False)(data)


def test_non_array_outputs_raise():
    def labelled(x):
        return {"value": x * 2, "label": "posterior"}

    x = pt.vector("x", shape=(2,))
    assert pytensor.wrap_jax(labelled)(x)["label"] == "posterior"
    with pytest.raises(TypeError, match=r"output\['label'\] is a str"):
        as_pytensor_op(labelled)(x)


def test_op_is_named_after_the_function():
    @as_pytensor_op
    def add(x, y):
        return x + y

    x = pt.vector("x", shape=(2,))
    assert str(add(x, x).owner.op) == "JaxOp{add}"
