"""Property tests: for random shapes, ranks, dtypes and static/unknown dims, a wrapped
elementwise or reduction function agrees with JAX on value, gradient and shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxOp

ELEMENTWISE = {
    "sin": jnp.sin,
    "x_exp_x": lambda x: x * jnp.exp(-(x**2)),
    "softplus": jax.nn.softplus,
    "poly": lambda x: 3 * x**3 - x + 1,
}
REDUCTIONS = {
    "sum": jnp.sum,
    "max": jnp.max,
    "logsumexp": jax.nn.logsumexp,
    "mean_sq": lambda x, axis=None: jnp.mean(x**2, axis=axis),
}


@st.composite
def cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    known = tuple(draw(st.booleans()) for _ in shape)
    kind = draw(st.sampled_from(["elementwise", "reduction"]))
    if kind == "elementwise":
        name = draw(st.sampled_from(sorted(ELEMENTWISE)))
        fn = ELEMENTWISE[name]
    else:
        name = draw(st.sampled_from(sorted(REDUCTIONS)))
        axis = draw(st.sampled_from([None, *range(len(shape))])) if shape else None
        base = REDUCTIONS[name]

        def fn(x, base=base, axis=axis):
            return base(x, axis=axis)

    seed = draw(st.integers(0, 2**16))
    return shape, dtype, known, fn, seed


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_value_gradient_and_shape_agree_with_jax(case):
    shape, dtype, known, fn, seed = case
    value = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    static_shape = tuple(s if k else None for s, k in zip(shape, known, strict=True))
    x = pt.tensor("x", dtype=dtype, shape=static_shape)
    out = as_pytensor_op(fn)(x)

    want = fn(jnp.asarray(value))
    assert out.dtype == str(want.dtype)
    assert all(s in (None, w) for s, w in zip(out.type.shape, want.shape, strict=True))
    tol = 1e-5 if dtype == "float32" else 1e-12

    f = pytensor.function([x], [out, pt.grad(out.sum(), x), out.shape])
    got, grad, got_shape = f(value)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    want_grad = jax.grad(lambda v: jnp.sum(fn(v)))(jnp.asarray(value))
    np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol)
    assert tuple(got_shape) == want.shape

    shape_only = pytensor.function([x], out.shape)
    assert not any(isinstance(n.op, JaxOp) for n in shape_only.maker.fgraph.apply_nodes)
    assert tuple(shape_only(value)) == want.shape
