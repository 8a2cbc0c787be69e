"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

from pymc_jaxops.bridge import numba_to_jax, register_jax_fallback

register_jax_fallback()  # Ops with no JAX implementation get one (perform + L_op)

__all__: list[str] = ["numba_to_jax", "register_jax_fallback"]
