"""Output types from symbolic tracing, and exact symbolic infer_shape."""

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxOp
from pymc_jaxops._shapes import (
    InputDim,
    dim_to_pytensor,
    explain_trace_error,
    mentions_symbolic_dim,
    rename_dims,
    symbolic_shape,
)


def test_static_dims_survive_unknown_ones():
    @as_pytensor_op
    def f(x, w):  # x: (n, 3), w: (3, 4) -> (n, 4) and (4,)
        y = x @ w
        return y, y.sum(0)

    y, s = f(pt.matrix("x", shape=(None, 3)), pt.matrix("w", shape=(3, 4)))
    assert y.type.shape == (None, 4)
    assert s.type.shape == (4,)


def test_infer_shape_is_exact_and_does_not_run_jax():
    @as_pytensor_op
    def f(x):
        return jnp.concatenate([x, x[1:]]), jnp.outer(x[::2], x)

    x = pt.vector("x")
    a, b = f(x)
    shape_fn = pytensor.function([x], [a.shape, b.shape])
    assert not any(isinstance(n.op, JaxOp) for n in shape_fn.maker.fgraph.apply_nodes), (
        "shapes should come from infer_shape, not from running the Op"
    )
    sa, sb = shape_fn(np.zeros(6))
    assert tuple(sa) == (11,) and tuple(sb) == (3, 6)


def test_dims_shared_between_unknown_inputs():
    # a + b needs equal lengths: distinct symbols fail, one shared symbol works.
    out = as_pytensor_op(lambda a, b: a * b + 1.0)(pt.vector("a"), pt.vector("b"))
    assert out.type.shape == (None,)
    f = pytensor.function(out.owner.inputs, out.shape)
    assert tuple(f(np.ones(4), np.ones(4))) == (4,)


def test_value_dependent_branch_on_shape_falls_back_to_concrete_shapes():
    data = pytensor.shared(np.ones((4, 2)))

    @as_pytensor_op
    def f(x):
        return x[:2] if x.shape[0] > 3 else x  # needs the concrete size

    out = f(data)
    assert out.type.shape == (None, None)
    np.testing.assert_allclose(out.eval(), np.ones((2, 2)))


def test_unknown_branching_on_free_input_is_a_clear_error():
    @as_pytensor_op
    def f(x):
        return x[:2] if x.shape[0] > 3 else x

    with pytest.raises(TypeError, match=r"(?s)could not trace 'f'.*specify_shape"):
        f(pt.vector("x"))


def test_unknown_dim_broadcast_against_fixed_size_names_the_argument():
    with pytest.raises(TypeError, match=r"(?s)x\.shape\[0\].*pt\.specify_shape"):
        as_pytensor_op(lambda x: x * jnp.arange(3.0))(pt.vector("x"))


def test_input_dims_are_the_one_symbol_scheme():
    dim = InputDim(1, 2)
    assert InputDim.from_symbol(dim.symbol) == dim
    assert InputDim.from_symbol("n") is None
    assert dim.shifted(3) == InputDim(1, 5)
    assert symbolic_shape(0, (None, 4, None)) == (
        InputDim(0, 0).symbol,
        4,
        InputDim(0, 2).symbol,
    )
    renamed = rename_dims(f"2*{dim.symbol} - max(n, 1)", {dim.symbol: "a", "n": "b"})
    assert renamed == "2*a - max(b, 1)"
    assert rename_dims(7, {}) == 7
    message = explain_trace_error(f"args[1] has {dim.symbol} rows", ["x", "w"])
    assert message == "`w` has w.shape[2] rows"
    assert mentions_symbolic_dim(f"size {dim.symbol}")
    assert not mentions_symbolic_dim("size 3")


def test_symbolic_dim_expressions_evaluate_in_pytensor():
    a, b = pt.iscalar("a"), pt.iscalar("b")
    expr = dim_to_pytensor("2*a - floordiv(b, 2) + max(a, b)", {"a": a, "b": b})
    assert expr.eval({a: 3, b: 5}) == 2 * 3 - 5 // 2 + 5
