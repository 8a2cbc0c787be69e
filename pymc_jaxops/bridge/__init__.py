"""Numba / NumPy / PyTensor-Op → JAX: XLA FFI handlers, a callback fallback, custom VJPs."""

from pymc_jaxops.bridge.jaxify import numba_to_jax
from pymc_jaxops.bridge.op_fallback import register_jax_fallback

__all__ = ["numba_to_jax", "register_jax_fallback"]
