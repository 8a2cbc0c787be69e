"""Numba / NumPy / PyTensor-Op → JAX: XLA FFI handlers, a callback fallback, custom VJPs."""

from pymc_jaxops.bridge.jaxify import numba_to_jax
from pymc_jaxops.bridge.op_fallback import register_jax_fallback, unregister_jax_fallback
from pymc_jaxops.errors import KernelTypeError

__all__ = ["KernelTypeError", "numba_to_jax", "register_jax_fallback", "unregister_jax_fallback"]
