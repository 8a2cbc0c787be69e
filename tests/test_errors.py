"""The bad-input table (docs/errors.md): each mistake fails at graph-build time, naming the
function and the argument and saying what to do, or works where it reasonably can."""

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError

from pymc_jaxops import as_pytensor_op

x = pt.vector("x")
s = pt.scalar("s")


def numpy_on_tracer(x):
    return np.sum(np.exp(x))


def branch_on_value(x, s):
    return x if s > 0 else -x


def slice_by_value(x, s):
    return x[: int(s)]


def scale(x, s):
    return x * s


def labelled(x):
    return {"value": x, "label": "posterior"}


def mask_by_value(x):
    return x[x > 0]


def check_scale(x, s):
    raise ValueError("scale must be positive")


def with_options(x, options):
    return x * options


def identity(x):
    return x


def diag_embed(x):
    # As libraries do: a concrete size (here for an index array) from an input's shape.
    rows, cols = jnp.diag_indices(x.shape[0])
    return jnp.zeros((x.shape[0], x.shape[0])).at[rows, cols].set(x)


def zero_padded(x):
    return jnp.concatenate([x, jnp.zeros(int(x.shape[0]) % 2)])


ERRORS = [
    # (case, call, exception, message pattern)
    (
        "numpy on a tracer",
        lambda: as_pytensor_op(numpy_on_tracer)(x),
        TypeError,
        r"(?s)'numpy_on_tracer'.*TracerArrayConversionError.*use jax\.numpy.*`x`",
    ),
    (
        "python if on a value",
        lambda: as_pytensor_op(branch_on_value)(x, s),
        TypeError,
        r"(?s)'branch_on_value'.*argument `s`.*jnp\.where or jax\.lax\.cond",
    ),
    (
        "int() of a value",
        lambda: as_pytensor_op(slice_by_value)(x, s),
        TypeError,
        r"(?s)'slice_by_value'.*argument `s`.*static \(non-array\) argument",
    ),
    (
        "too few arguments",
        lambda: as_pytensor_op(scale)(x),
        TypeError,
        r"scale\(x, s\): missing a required argument: 's'",
    ),
    (
        "too many arguments",
        lambda: as_pytensor_op(scale)(x, s, s),
        TypeError,
        r"scale\(x, s\): too many positional arguments",
    ),
    (
        "unknown keyword",
        lambda: as_pytensor_op(scale)(x, s, factor=s),
        TypeError,
        r"scale\(x, s\): got an unexpected keyword argument 'factor'",
    ),
    (
        "a str output",
        lambda: as_pytensor_op(labelled)(x),
        TypeError,
        r"(?s)'labelled'.*output\['label'\] is a str, not an array",
    ),
    (
        "value-dependent output shape",
        lambda: as_pytensor_op(mask_by_value)(x),
        TypeError,
        r"(?s)'mask_by_value'.*NonConcreteBooleanIndexError.*jnp\.where\(mask, x, 0\)",
    ),
    (
        "the function raises",
        lambda: as_pytensor_op(check_scale)(x, s),
        ValueError,
        r"(?s)'check_scale'.*scale must be positive",
    ),
    (
        "unhashable static argument",
        lambda: as_pytensor_op(with_options)(x, {1, 2}),
        TypeError,
        r"with_options: argument `options` is a set, which is neither an array nor hashable",
    ),
    (
        "non-tensor variable",
        lambda: as_pytensor_op(identity)(pytensor.shared(np.random.default_rng())),
        TypeError,
        r"identity: argument `x` is a PyTensor RandomGeneratorType variable, not a tensor",
    ),
    (
        "unknown dim meets a fixed one",
        lambda: as_pytensor_op(lambda x: x * jnp.ones(3))(x),
        TypeError,
        r"(?s)x\.shape\[0\].*pt\.specify_shape",
    ),
    (
        "a library needs a concrete size",
        lambda: as_pytensor_op(diag_embed)(x),
        TypeError,
        r"(?s)'diag_embed'.*_DimExpr.*not know x\.shape\[0\].*pt\.specify_shape\(x, shape\)",
    ),
    (
        "int() of an unknown size",
        lambda: as_pytensor_op(zero_padded)(x),
        TypeError,
        r"(?s)'zero_padded'.*InconclusiveDimension.*not know x\.shape\[0\].*pt\.specify_shape",
    ),
]


@pytest.mark.parametrize("call, exc, pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_fails_at_build_time_with_a_clear_message(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_error_messages_in_docs_are_current():
    """docs/errors.md lists every case of the table above."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "errors.md").read_text()
    for case, *_ in ERRORS:
        assert case in text, case


def test_unknown_size_hint_for_a_third_party_library():
    tinygp = pytest.importorskip("tinygp")

    def gp_logp(t, y):
        gp = tinygp.GaussianProcess(tinygp.kernels.ExpSquared(1.5), t, diag=0.1)
        return gp.log_probability(y)

    t, y = pt.vector("t"), pt.vector("y")
    with pytest.raises(TypeError, match=r"(?s)not know t\.shape\[0\], y\.shape\[0\].*specify"):
        as_pytensor_op(gp_logp)(t, y)
    # The fix the message names works.
    fixed = as_pytensor_op(gp_logp)(pt.specify_shape(t, (4,)), pt.specify_shape(y, (4,)))
    tv, yv = np.linspace(0, 1, 4), np.array([0.1, -0.2, 0.3, 0.0])
    want = tinygp.GaussianProcess(tinygp.kernels.ExpSquared(1.5), tv, diag=0.1).log_probability(yv)
    np.testing.assert_allclose(fixed.eval({t: tv, y: yv}), want, rtol=1e-12)


def test_none_inside_the_output_pytree_is_kept():
    out = as_pytensor_op(lambda x: {"value": x * 2, "extra": None})(x)
    assert out["extra"] is None
    np.testing.assert_allclose(out["value"].eval({x: [1.0, 2.0]}), [2.0, 4.0])


def test_gradient_wrt_an_integer_input_is_refused():
    idx = pt.lvector("idx")
    out = as_pytensor_op(lambda x, i: jnp.sum(x[i] ** 2))(x, idx)
    with pytest.raises(NullTypeGradError, match=r"<lambda>: argument `i` is int64"):
        pt.grad(out, idx)


def test_gradient_through_a_computed_integer_is_exact():
    # argmax(x) is piecewise constant: d/dx sum(x[argmax(x)]**2) = 2 x at the argmax.
    out = as_pytensor_op(lambda x, i: jnp.sum(x[i] ** 2))(x, pt.argmax(x, keepdims=False))
    f = pytensor.function([x], pt.grad(out, x))
    np.testing.assert_allclose(f([1.0, 3.0, 2.0]), [0.0, 6.0, 0.0])


def test_boolean_inputs_work_forward():
    mask = pt.vector("mask", dtype="bool")
    out = as_pytensor_op(lambda x, m: jnp.sum(jnp.where(m, x, 0.0)))(x, mask)
    g = pytensor.function([x, mask], pt.grad(out, x))
    np.testing.assert_allclose(g([1.0, 2.0], [True, False]), [1.0, 0.0])


def test_complex_values_work_forward_and_refuse_gradients():
    out = as_pytensor_op(lambda x: x * (1 + 2j))(x)
    assert out.dtype == "complex128"
    np.testing.assert_allclose(out.eval({x: [1.0]}), [1 + 2j])
    with pytest.raises((NotImplementedError, TypeError)):
        pt.grad(pt.abs(out).sum(), x)


def test_float32_input_under_float64_pymc_works():
    x32 = pt.vector("x32", dtype="float32")
    out = as_pytensor_op(lambda a, b: jnp.sum(a) * b)(x32, s)
    assert out.dtype == "float64"
    f = pytensor.function([x32, s], pt.grad(out, x32))
    assert f(np.ones(2, "float32"), 2.0).dtype == np.float32


def test_wrapping_a_jitted_function_works():
    out = as_pytensor_op(jax.jit(lambda x: jnp.sum(x**2)))(x)
    np.testing.assert_allclose(pytensor.function([x], pt.grad(out, x))([1.0, 2.0]), [2.0, 4.0])
