"""Numba / NumPy / PyTensor-Op → JAX: XLA FFI handlers, a callback fallback, custom VJPs."""

from pymc_jaxops.bridge.jaxify import numba_to_jax

__all__ = ["numba_to_jax"]
