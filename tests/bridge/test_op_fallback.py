"""Ops without a JAX implementation run in JAX mode and under NumPyro through the bridge."""

import warnings

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.ops import wrap_py
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from pymc_jaxops._upstream.pytensor import PYTENSOR3
from pymc_jaxops.bridge import register_jax_fallback, unregister_jax_fallback

register_jax_fallback()


@wrap_py(itypes=[pt.dvector], otypes=[pt.dvector])
def cos_op(x):
    return np.cos(x)


class SinOp(Op):
    """A user Op with ``perform`` and ``grad`` and no JAX implementation."""

    def make_node(self, x):
        x = pt.as_tensor(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.sin(inputs[0])

    def grad(self, inputs, output_grads):
        return [output_grads[0] * cos_op(inputs[0])]  # another black box, converted recursively


@numba.njit
def numba_square(x):
    return x * x


square_op = wrap_py(itypes=[pt.dvector], otypes=[pt.dvector])(numba_square)


def compile_both(inputs, outputs):
    return (
        pytensor.function(inputs, outputs, mode="JAX"),
        pytensor.function(inputs, outputs, mode="FAST_RUN"),
    )


def test_user_op_values_and_gradients_match_default_mode():
    x = pt.dvector("x")
    y = (SinOp()(x) ** 2).sum()
    f_jax, f_ref = compile_both([x], [y, pytensor.grad(y, x)])
    v = np.array([0.1, 0.5, 2.0, -1.3])
    for got, want in zip(f_jax(v), f_ref(v), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_wrap_py_of_numba_function_and_unknown_shapes():
    x = pt.dvector("x")
    y = square_op(cos_op(x))  # output shapes unknown statically: probed/inferred at trace
    f_jax, f_ref = compile_both([x], y)
    v = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(f_jax(v), f_ref(v), rtol=1e-12)

    import jax

    from pymc_jaxops.bridge.op_fallback import _jax_funcify_fallback

    node = square_op(x).owner
    fn = _jax_funcify_fallback(node.op, node=node)
    assert "ffi_call" in str(jax.make_jaxpr(fn)(v))  # the Numba function runs as XLA FFI
    assert "pure_callback" in str(
        jax.make_jaxpr(_jax_funcify_fallback(cos_op, node=cos_op(x).owner))(v)
    )


def test_op_without_gradient_still_runs_forward_and_says_why_grad_fails():
    import jax

    from pymc_jaxops.bridge.op_fallback import _jax_funcify_fallback

    x = pt.dvector("x")
    node = cos_op(x).owner
    fn = _jax_funcify_fallback(node.op, node=node)
    np.testing.assert_allclose(fn(np.zeros(2)), [1.0, 1.0])
    with pytest.raises(NotImplementedError, match="JAX cannot differentiate FromFunctionOp"):
        jax.grad(lambda v: fn(v).sum())(np.zeros(2))


def test_ops_with_a_jax_implementation_are_untouched():
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.elemwise import Elemwise

    from pymc_jaxops.bridge.op_fallback import _jax_funcify_fallback

    assert jax_funcify.dispatch(Elemwise) is not _jax_funcify_fallback
    assert jax_funcify.dispatch(SinOp) is _jax_funcify_fallback


@pytest.fixture
def fallback_off():
    unregister_jax_fallback()
    yield
    register_jax_fallback()  # as `import pymc_jaxops` leaves it


def test_switched_off_gives_pytensors_error_saying_what_to_call(fallback_off):
    x = pt.dvector("x")
    for y in (cos_op(x), SinOp()(x)):
        with pytest.raises(NotImplementedError, match=r"No JAX conversion for the given `Op`"):
            pytensor.function([x], y, mode="JAX")
        with pytest.raises(NotImplementedError, match=r"pymc_jaxops\.register_jax_fallback\(\)"):
            pytensor.function([x], y, mode="JAX")
    register_jax_fallback()
    np.testing.assert_allclose(
        pytensor.function([x], cos_op(x), mode="JAX")(np.zeros(2)), [1.0, 1.0]
    )


def test_numpyro_with_the_fallback_off_says_what_to_call(fallback_off):
    import pymc as pm

    with pm.Model():
        mu = pm.Normal("mu", 0.0, 1.0, shape=2)
        pm.Potential("black_box", SinOp()(mu).sum())
        with pytest.raises(NotImplementedError, match=r"register_jax_fallback\(\)"):
            pm.sample(nuts_sampler="numpyro", draws=10, tune=10, chains=1, progressbar=False)


@pytest.mark.slow
def test_pymc_model_with_black_box_samples_with_numpyro():
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # as_op is deprecated for wrap_py

        @pytensor.compile.ops.as_op(itypes=[pt.dvector, pt.dscalar], otypes=[pt.dscalar])
        def normal_loglik(data, mu):
            return np.asarray(-0.5 * np.sum((data - mu) ** 2))

        @pytensor.compile.ops.as_op(itypes=[pt.dvector, pt.dscalar], otypes=[pt.dscalar])
        def normal_dloglik_dmu(data, mu):
            return np.asarray(np.sum(data - mu))

    def gradient(inputs, g):
        return [pt.zeros_like(inputs[0]), g[0] * normal_dloglik_dmu(*inputs)]

    # How a user gives one black-box instance its gradient on each PyTensor line.
    if PYTENSOR3:
        normal_loglik.pullback = lambda inputs, outputs, g: gradient(inputs, g)
    else:
        normal_loglik.grad = gradient
    data = np.random.default_rng(0).normal(1.5, 1.0, size=50)
    with pm.Model():
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Potential("loglik", normal_loglik(pt.as_tensor(data), mu))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "fewer than 4 chains"
            idata = pm.sample(
                nuts_sampler="numpyro",
                draws=300,
                tune=200,
                chains=1,
                progressbar=False,
                random_seed=1,
                compute_convergence_checks=False,
            )
    # Posterior of mu: N(mean * n / (n + 1/100), 1 / (n + 1/100)); sd ≈ 0.14, MC error ≈ 0.01.
    post_mean = data.sum() / (len(data) + 0.01)
    assert abs(idata.posterior["mu"].mean().item() - post_mean) < 0.05
    assert 0.1 < idata.posterior["mu"].std().item() < 0.2
