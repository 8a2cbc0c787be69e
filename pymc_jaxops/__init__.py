"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

from pymc_jaxops import dispatch as _dispatch  # noqa: F401  (registers jax_funcify)
from pymc_jaxops import multiprocess as _multiprocess  # noqa: F401  (no fork of live JAX)
from pymc_jaxops import rewrites as _rewrites  # noqa: F401  (registers graph rewrites)
from pymc_jaxops import vectorize as _vectorize  # noqa: F401  (JaxOp -> jax.vmap)
from pymc_jaxops.wrap import as_pytensor_op

__all__ = ["as_pytensor_op"]
