"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

# ruff: noqa: E402  (the device count must be set before any import below could start JAX)
from pymc_jaxops import devices as _devices

# First, before anything can start JAX: one CPU device per core (PYMC_JAXOPS_CPU_DEVICES=off).
_devices._configure_at_import()

from pymc_jaxops import absorb as _absorb  # noqa: F401  (opt-in whole-graph XLA rewrite)
from pymc_jaxops import dispatch as _dispatch  # noqa: F401  (registers jax_funcify)
from pymc_jaxops import multiprocess as _multiprocess  # noqa: F401  (no fork of live JAX)
from pymc_jaxops import rewrites as _rewrites  # noqa: F401  (registers graph rewrites)
from pymc_jaxops import vectorize as _vectorize  # noqa: F401  (JaxOp -> jax.vmap)
from pymc_jaxops.blackjax_nuts import sample_blackjax_nuts
from pymc_jaxops.bridge import numba_to_jax, register_jax_fallback, unregister_jax_fallback
from pymc_jaxops.devices import set_cpu_devices
from pymc_jaxops.model import JaxModel, model_to_jax
from pymc_jaxops.wrap import as_pytensor_op, clear_caches

# On by default so black-box Ops sample with NumPyro out of the box; scoped to Ops with no
# JAX implementation of their own; unregister_jax_fallback() switches it off.
register_jax_fallback()

__all__ = [
    "JaxModel",
    "as_pytensor_op",
    "clear_caches",
    "model_to_jax",
    "numba_to_jax",
    "register_jax_fallback",
    "sample_blackjax_nuts",
    "set_cpu_devices",
    "unregister_jax_fallback",
]
