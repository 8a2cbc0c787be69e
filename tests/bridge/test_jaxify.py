"""numba_to_jax: values, gradients and transformations through the XLA FFI bridge."""

import json
import pickle
from pathlib import Path

import cloudpickle
import jax
import jax.numpy as jnp
import numba
import numpy as np
import pytest

from pymc_jaxops.bridge import KernelTypeError, numba_to_jax
from pymc_jaxops.precision import X64Error
from tests._subprocess import run_python

from .kernels import (
    affine_and_norm,
    affine_and_norm_jnp,
    affine_and_norm_vjp,
    mixture_dlogpdf,
    mixture_logpdf,
    mixture_logpdf_jnp,
)

SCALAR_LIKE = lambda x: jax.ShapeDtypeStruct((), x.dtype)  # noqa: E731
F64_SCALAR = jax.ShapeDtypeStruct((), jnp.float64)
# The mixture's constants are float64, so its value is float64 whatever the input's dtype.
logp = numba_to_jax(mixture_logpdf, F64_SCALAR, grad=mixture_dlogpdf)
XS = np.linspace(-6.0, 8.0, 7)
RUNTIME_ERRORS = (jax.errors.JaxRuntimeError, ValueError)


def affine_out(x, a):
    return jax.ShapeDtypeStruct((a.shape[0],), x.dtype), jax.ShapeDtypeStruct((), x.dtype)


affine = numba_to_jax(affine_and_norm, affine_out, vjp=affine_and_norm_vjp)


def test_backend_is_ffi_for_njit_functions():
    assert logp.backend == "ffi"
    assert logp.__name__ == "mixture_logpdf"


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_value_and_grad_match_numba_and_jnp(dtype, rtol):
    for x in XS.astype(dtype):
        value, grad = jax.value_and_grad(logp)(x)
        assert value.dtype == np.float64 and grad.dtype == dtype  # gradient: the input's dtype
        np.testing.assert_allclose(value, mixture_logpdf(x), rtol=rtol)
        np.testing.assert_allclose(grad, mixture_dlogpdf(x), rtol=rtol, atol=rtol)
        ref_v, ref_g = jax.value_and_grad(mixture_logpdf_jnp)(np.float64(x))
        np.testing.assert_allclose(value, ref_v, rtol=rtol)
        np.testing.assert_allclose(grad, ref_g, rtol=rtol, atol=rtol)


def test_jit_vmap_grad_compose():
    got = jax.jit(jax.vmap(jax.value_and_grad(logp)))(XS)
    want = jax.vmap(jax.value_and_grad(mixture_logpdf_jnp))(XS)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    grid = XS.reshape(7, 1) + np.zeros((1, 3))  # nested vmap: batch dims (7, 3)
    got2 = jax.vmap(jax.vmap(jax.grad(logp)))(grid)
    np.testing.assert_allclose(got2, np.broadcast_to(want[1][:, None], (7, 3)), rtol=1e-12)


def test_inside_fori_loop():
    def total(x):
        return jax.lax.fori_loop(0, 50, lambda i, acc: acc + logp(x + 0.1 * i), 0.0)

    want = sum(mixture_logpdf(0.3 + 0.1 * i) for i in range(50))
    np.testing.assert_allclose(jax.jit(total)(0.3), want, rtol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.grad(total))(0.3),
        sum(mixture_dlogpdf(0.3 + 0.1 * i) for i in range(50)),
        rtol=1e-12,
    )


@pytest.mark.slow
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_several_inputs_and_outputs_with_vjp(dtype, rtol):
    rng = np.random.default_rng(0)
    x = rng.normal(size=3).astype(dtype)
    a = rng.normal(size=(4, 3)).astype(dtype)
    y, s = jax.jit(affine)(x, a)
    assert y.dtype == dtype and y.shape == (4,) and s.shape == ()
    ref_y, ref_s = affine_and_norm(x, a)
    np.testing.assert_allclose(y, ref_y, rtol=rtol)
    np.testing.assert_allclose(s, ref_s, rtol=rtol)

    def loss(f):
        return lambda x, a: jnp.sum(jnp.sin(f(x, a)[0])) + 3.0 * f(x, a)[1]

    got = jax.grad(loss(affine), argnums=(0, 1))(x, a)
    want = jax.grad(loss(affine_and_norm_jnp), argnums=(0, 1))(x, a)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=10 * rtol, atol=10 * rtol)


def test_vmap_broadcasts_unbatched_inputs_without_copies():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(5, 3))
    a = rng.normal(size=(4, 3))
    ys, ss = jax.vmap(affine, in_axes=(0, None))(xs, a)
    np.testing.assert_allclose(ys, xs @ a.T, rtol=1e-12)
    np.testing.assert_allclose(ss, (xs**2).sum(1), rtol=1e-12)
    a_s = rng.normal(size=(2, 4, 3))
    ys2, _ = jax.vmap(jax.vmap(affine, in_axes=(0, None)), in_axes=(None, 0))(xs, a_s)
    np.testing.assert_allclose(ys2, np.einsum("kij,bj->kbi", a_s, xs), rtol=1e-12)
    gx = jax.vmap(jax.grad(lambda x, a: affine(x, a)[1]), in_axes=(0, None))(xs, a)
    np.testing.assert_allclose(gx, 2 * xs, rtol=1e-12)


@numba.njit
def rank3_scale(t, k):
    return t * k[0], t[0] + t[1]  # (cheaper to compile than t.sum(axis=0))


@pytest.mark.slow
def test_rank3_and_integer_arguments():
    f = numba_to_jax(rank3_scale, lambda t, k: (t, jax.ShapeDtypeStruct(t.shape[1:], t.dtype)))
    t = np.arange(24.0).reshape(2, 3, 4)
    k = np.array([3], dtype=np.int32)
    y, s = f(t, k)
    np.testing.assert_allclose(y, 3 * t)
    np.testing.assert_allclose(s, t[0] + t[1])


@numba.njit
def doubled_in_a_tuple(x):
    return (2.0 * x,)


def test_one_output_declared_as_a_tuple_is_returned_as_a_tuple():
    for fn in (doubled_in_a_tuple, lambda x: (2.0 * x,)):  # FFI, callback
        (y,) = jax.vmap(numba_to_jax(fn, lambda x: (x,)))(np.ones((3, 2)))
        np.testing.assert_array_equal(y, np.full((3, 2), 2.0))


@numba.njit
def scaled_norm(x, k):
    return k[0] * np.sum(x * x)


@numba.njit
def scaled_norm_grad(x, k):
    return 2.0 * k[0] * x


def test_integer_arguments_are_not_differentiated():
    f = numba_to_jax(scaled_norm, jax.ShapeDtypeStruct((), jnp.float64), grad=scaled_norm_grad)
    x = np.array([1.0, -2.0])
    k = np.array([3], dtype=np.int64)
    gx, gk = jax.grad(f, argnums=(0, 1), allow_int=True)(x, k)
    np.testing.assert_allclose(gx, 6 * x)
    assert gk.dtype == jax.dtypes.float0


def test_python_function_uses_callback_with_same_results():
    f = numba_to_jax(
        lambda x, a: (a @ x, np.sum(x * x)),
        affine_out,
        vjp=lambda x, a, cy, cs: (a.T @ cy + 2 * cs * x, np.outer(cy, x)),
    )
    assert f.backend == "callback"
    rng = np.random.default_rng(2)
    xs, a = rng.normal(size=(3, 3)), rng.normal(size=(4, 3))
    got = jax.jit(jax.vmap(jax.grad(lambda x: f(x, a)[1] + f(x, a)[0].sum())))(xs)
    want = jax.vmap(jax.grad(lambda x: affine(x, a)[1] + affine(x, a)[0].sum()))(xs)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    forced = numba_to_jax(mixture_logpdf, SCALAR_LIKE, grad=mixture_dlogpdf, backend="callback")
    assert forced.backend == "callback"
    np.testing.assert_allclose(jax.vmap(jax.grad(forced))(XS), jax.vmap(jax.grad(logp))(XS))


# --- errors: raised at trace time, naming the function and argument -----------------------


def test_unsupported_dtype_names_the_argument():
    with pytest.raises(TypeError, match=r"numba_to_jax\(mixture_logpdf\): argument 0 \('x'\)"):
        logp(jnp.ones((), jnp.complex64))
    with pytest.raises(TypeError, match=r"Cast it, for example `x\.astype"):
        logp(jnp.ones((), jnp.float16))


@numba.njit("float64(float64[:])")
def fixed_sum(x):
    return x.sum()


def test_fixed_signature_rejects_float32_clearly():
    f = numba_to_jax(fixed_sum, jax.ShapeDtypeStruct((), jnp.float64))
    assert float(f(np.ones(3))) == 3.0
    with pytest.raises(TypeError, match=r"fixed_sum was compiled for fixed signatures"):
        f(np.ones(3, np.float32))


def test_result_rank_mismatch_is_a_trace_time_error():
    f = numba_to_jax(affine_and_norm, jax.ShapeDtypeStruct((), jnp.float64))
    with pytest.raises(
        TypeError, match=r"returns a tuple of 2 values, but one output is declared"
    ):
        f(np.ones(3), np.ones((2, 3)))
    g = numba_to_jax(rank3_scale, lambda t, k: (t, t))  # second output has rank 2, not 3
    with pytest.raises(TypeError, match=r"for output 1, but the declared output 1 has rank 3"):
        g(np.ones((2, 3, 4)), np.ones(1, np.int32))


@numba.njit
def uses_missing_method(x):
    return x.no_such_method()


def test_numba_typing_error_is_reported_with_the_arguments():
    f = numba_to_jax(uses_missing_method, SCALAR_LIKE)
    with pytest.raises(
        KernelTypeError, match=r"Numba cannot compile uses_missing_method for \(x: a"
    ):
        f(np.ones(2))


def test_bad_out_and_bad_options():
    with pytest.raises(TypeError, match=r"`out` must be a jax\.ShapeDtypeStruct"):
        numba_to_jax(mixture_logpdf, (3,))(1.0)
    with pytest.raises(TypeError, match="pass `grad` or `vjp`, not both"):
        numba_to_jax(mixture_logpdf, SCALAR_LIKE, grad=mixture_dlogpdf, vjp=mixture_dlogpdf)
    with pytest.raises(TypeError, match="backend='ffi' needs fn to be a nopython Numba function"):
        numba_to_jax(np.sin, lambda x: x, backend="ffi")
    vec = numba_to_jax(affine_and_norm, affine_out, grad=affine_and_norm_vjp)
    with pytest.raises(TypeError, match="`grad` needs a single scalar output"):
        jax.grad(lambda x, a: vec(x, a)[1])(np.ones(3), np.ones((2, 3)))


# --- errors while XLA runs the handler: Python exceptions, not crashes --------------------


@numba.njit
def raises_on_negative(x):
    if x[0] < 0:
        raise ValueError("negative input")
    return 2.0 * x


@numba.njit
def wrong_length(x):
    return x[:-1].copy()


def test_exception_inside_the_handler_surfaces_as_python_error():
    f = jax.jit(numba_to_jax(raises_on_negative, lambda x: x))
    np.testing.assert_allclose(f(np.ones(2)), [2.0, 2.0])
    with pytest.raises(RUNTIME_ERRORS, match=r"raises_on_negative raised an exception"):
        f(-np.ones(2)).block_until_ready()
    np.testing.assert_allclose(f(np.ones(2)), [2.0, 2.0])  # the process is still healthy


def test_wrong_result_size_is_reported_by_the_handler():
    f = numba_to_jax(wrong_length, lambda x: x)
    with pytest.raises(RUNTIME_ERRORS, match=r"whose number of elements differs"):
        f(np.ones(3)).block_until_ready()


def test_callback_shape_errors_are_reported():
    f = numba_to_jax(lambda x: np.ones(2), lambda x: x)
    with pytest.raises(RUNTIME_ERRORS, match=r"returned shape \(2,\) for output 0"):
        f(np.ones(3)).block_until_ready()


def test_float64_with_x64_switched_off_is_a_clear_error():
    f = numba_to_jax(mixture_logpdf, F64_SCALAR)
    jax.config.update("jax_enable_x64", False)  # the autouse fixture switches it back on
    with pytest.raises(X64Error, match=r"numba_to_jax\(mixture_logpdf\) computes in float64"):
        f(np.float64(0.5))


def test_float64_inside_an_x64_off_block_is_a_clear_error():
    f = numba_to_jax(mixture_logpdf, F64_SCALAR)
    with jax.enable_x64(False):
        with pytest.raises(X64Error, match=r"float64 but JAX's x64 mode is off"):
            f(np.float32(0.5))
        with pytest.raises(X64Error, match=r"float64 but JAX's x64 mode is off"):
            logp(np.float64(0.5))


# --- results are never cast silently ----------------------------------------------------


@numba.njit
def halves(x):
    return 2.5 * x


@pytest.mark.parametrize("declared", [jnp.int64, jnp.float32])
def test_result_dtype_differing_from_out_is_refused(declared):
    f = numba_to_jax(halves, lambda x: jax.ShapeDtypeStruct(x.shape, declared))
    with pytest.raises(
        KernelTypeError,
        match=rf"numba_to_jax\(halves\): halves returns float64 for output 0, but output 0 is "
        rf"declared {np.dtype(declared)}",
    ):
        f(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(
        numba_to_jax(halves, lambda x: x)(np.array([1.0, 2.0, 3.0])), [2.5, 5.0, 7.5]
    )


def test_callback_result_dtype_differing_from_out_is_refused():
    f = numba_to_jax(lambda x: 2.5 * x, lambda x: jax.ShapeDtypeStruct(x.shape, jnp.int64))
    with pytest.raises(RUNTIME_ERRORS, match=r"returned float64 for output 0, but output 0 is"):
        f(np.array([1.0, 2.0, 3.0])).block_until_ready()
    g = numba_to_jax(lambda x: float(np.sum(x)), lambda x: jax.ShapeDtypeStruct((), x.dtype))
    assert g(np.ones(3, np.float32)).dtype == np.float32  # a Python float takes `out`'s dtype


def test_grad_of_float32_input_is_float32_inside_a_fori_loop():
    # Gradient ascent on the mixture in float32: the carry must keep its dtype.
    def ascend(x0):
        return jax.lax.fori_loop(0, 30, lambda i, x: x + 0.5 * jax.grad(logp)(x), x0)

    x = jax.jit(ascend)(jnp.float32(2.0))
    assert x.dtype == np.float32
    want = np.float32(2.0)
    for _ in range(30):
        want = np.float32(want + np.float32(0.5) * np.float32(mixture_dlogpdf(want)))
    np.testing.assert_allclose(x, want, rtol=1e-5)


# --- bad input: a clear error at once, naming the function and the argument -------------


def test_fn_grad_and_vjp_must_be_callable():
    with pytest.raises(TypeError, match=r"numba_to_jax: `fn` must be a function of arrays"):
        numba_to_jax(3, F64_SCALAR)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"numba_to_jax\(mixture_logpdf\): `grad` must be"):
        numba_to_jax(mixture_logpdf, F64_SCALAR, grad="dlogp")  # type: ignore[arg-type]


class _Declared:
    """A ShapeDtypeStruct look-alike: JAX's own would refuse a non-integer dim itself."""

    def __init__(self, shape):
        self.shape, self.dtype = shape, np.float64


@pytest.mark.parametrize("shape", [(-1,), (2, -3), (1.5,)])
def test_out_with_a_bad_dim_is_refused_when_declared(shape):
    with pytest.raises(
        TypeError, match=r"numba_to_jax\(halves\): declared output 0 has shape .* non-negative"
    ):
        numba_to_jax(halves, _Declared(shape))


def test_out_callable_with_a_negative_dim_is_refused_at_trace_time():
    f = numba_to_jax(halves, lambda x: jax.ShapeDtypeStruct((x.shape[0] - 4,), x.dtype))
    with pytest.raises(TypeError, match=r"declared output 0 has shape \(-1,\)"):
        f(np.ones(3))


@numba.njit
def imports_inside(x):
    import math  # Numba cannot compile an import statement

    return math.pi * x


def test_numba_compile_failure_of_any_kind_names_the_function():
    f = numba_to_jax(imports_inside, lambda x: x)
    with pytest.raises(
        KernelTypeError,
        match=r"numba_to_jax\(imports_inside\): Numba cannot compile imports_inside for "
        r"\(x: a 1-d float64 array\): UnsupportedBytecodeError",
    ):
        f(np.ones(2))


def test_grad_without_grad_or_vjp_names_the_function_and_the_fix():
    f = numba_to_jax(mixture_logpdf, F64_SCALAR)
    assert float(f(0.5)) == pytest.approx(mixture_logpdf(0.5))
    with pytest.raises(
        TypeError,
        match=r"numba_to_jax\(mixture_logpdf\): JAX cannot differentiate mixture_logpdf.*"
        r"pass `grad=`.*`vjp=`",
    ):
        jax.grad(f)(0.5)
    # Gradients that do not flow through it still work.
    np.testing.assert_allclose(jax.grad(lambda x: x**2 + f(jax.lax.stop_gradient(x)))(1.5), 3.0)


# --- pickling: what workers of pm.sample(cores>1) receive -------------------------------


def test_pickle_round_trip_rebuilds_a_working_function():
    # Module-level functions and `out`: plain pickle works; cloudpickle always does.
    for f, restore in [
        (logp, pickle.loads(pickle.dumps(logp))),
        (affine, pickle.loads(pickle.dumps(affine))),
        (logp, cloudpickle.loads(cloudpickle.dumps(logp))),
    ]:
        assert restore.backend == f.backend and restore.__name__ == f.__name__
    restored = pickle.loads(pickle.dumps(logp))
    for x in (-1.0, 0.3, 4.0):
        np.testing.assert_allclose(
            jax.value_and_grad(restored)(x), jax.value_and_grad(logp)(x), rtol=1e-15
        )
    local = numba_to_jax(
        lambda x: np.sum(x**3),
        lambda x: jax.ShapeDtypeStruct((), x.dtype),
        grad=lambda x: 3 * x**2,
    )
    again = cloudpickle.loads(cloudpickle.dumps(local))
    np.testing.assert_allclose(jax.grad(again)(np.array([1.0, 2.0])), [3.0, 12.0])


def _run_script(path: Path, timeout: float) -> str:
    """Run a script as a user would; a hang kills its whole process group and fails."""
    proc = run_python([str(path)], timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_model_with_a_bridged_function_samples_on_two_cores():
    out = _run_script(Path(__file__).parent / "scripts" / "numba_model_two_cores.py", 300)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["chains"] == 2
    # 200 observations: the posterior sd of mu is about sd / sqrt(200) ≈ 0.033, and 800
    # draws put the posterior mean within a few thousandths of the data's.
    assert abs(res["mu"] - res["ybar"]) < 0.02
    assert abs(res["sigma"] - res["sd"]) < 0.03
