"""The generated FFI handler checks what XLA hands it, whatever the caller declared."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pymc_jaxops.bridge._handler import ffi_target
from pymc_jaxops.bridge._kernel import Kernel, compile_kernel

from .kernels import mixture_logpdf

F64 = np.dtype(np.float64)


@pytest.fixture(scope="module")
def f64_target():
    kernel = Kernel(mixture_logpdf, 1, "mixture_logpdf", returns_tuple=False, exact_dtypes=True)
    compile_kernel(kernel, [(F64, 0)], ["x"])
    return ffi_target([kernel], [(F64, 0)], [(F64, 0)], "mixture_logpdf")


def call(target, x, out_dtype=jnp.float64, out_shape=()):
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, out_dtype))(x)


def test_handler_runs_the_kernel(f64_target):
    np.testing.assert_allclose(call(f64_target, jnp.float64(0.5)), mixture_logpdf(0.5))


def test_float32_buffer_into_float64_handler_is_an_error_not_garbage(f64_target):
    with pytest.raises(Exception, match=r"input 0 is not float64, which the handler was"):
        call(f64_target, jnp.float32(0.5)).block_until_ready()
    with pytest.raises(Exception, match=r"output 0 is not float64"):
        call(f64_target, jnp.float64(0.5), out_dtype=jnp.float32).block_until_ready()


def test_rank_and_arity_mismatches_are_errors(f64_target):
    with pytest.raises(Exception, match=r"(in|out)put 0 does not have rank 0 plus the batch dims"):
        call(f64_target, jnp.float64(0.5), out_shape=(2,)).block_until_ready()
    with pytest.raises(Exception, match=r"expected 1 inputs and 1 outputs"):
        jax.ffi.ffi_call(f64_target, jax.ShapeDtypeStruct((), jnp.float64))(
            jnp.float64(0.5), jnp.float64(1.0)
        ).block_until_ready()


def test_target_is_cached_per_signature(f64_target):
    kernel = Kernel(mixture_logpdf, 1, "mixture_logpdf", returns_tuple=False, exact_dtypes=True)
    assert ffi_target([kernel], [(F64, 0)], [(F64, 0)], "mixture_logpdf") == f64_target
