"""Put any JAX function inside a PyMC model, and run any model on any sampler.

The registrations that make wrapped functions work everywhere happen on import. The
PyMC-model-to-JAX tools (``model_to_jax``, ``JaxModel``, ``sample_blackjax_nuts``) are
imported on first use: they pull in PyMC's model machinery, ArviZ and BlackJAX, which a
user who only wraps functions does not need.
"""

# ruff: noqa: E402  (the device count must be set before any import below could start JAX)
from __future__ import annotations

from pymc_jaxops import devices as _devices

# First, before anything can start JAX: one CPU device per core (PYMC_JAXOPS_CPU_DEVICES=off).
_devices._configure_at_import()

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from pymc_jaxops import (
    _absorb,  # noqa: F401  (whole-graph XLA rewrite)
    _lazy,
    _nutpie_backend,  # noqa: F401  (pm.sample() on pymc 6)
    _turns,  # noqa: F401  (a compiled function's calls take turns)
    _upstream,
)
from pymc_jaxops import dispatch as _dispatch  # noqa: F401  (registers jax_funcify)
from pymc_jaxops import multiprocess as _multiprocess  # noqa: F401  (no fork of live JAX)
from pymc_jaxops import rewrites as _rewrites  # noqa: F401  (registers graph rewrites)
from pymc_jaxops import vectorize as _vectorize  # noqa: F401  (JaxOp -> jax.vmap)
from pymc_jaxops.bridge import numba_to_jax, register_jax_fallback, unregister_jax_fallback
from pymc_jaxops.devices import set_cpu_devices
from pymc_jaxops.errors import ConfigError, KernelTypeError, WorkerProcessError, X64Error
from pymc_jaxops.to_jax import _rv_samplers  # noqa: F401  (JAX samplers PyTensor lacks)
from pymc_jaxops.wrap import as_pytensor_op, clear_caches

if TYPE_CHECKING:
    from pymc_jaxops.to_jax.blackjax_nuts import sample_blackjax_nuts
    from pymc_jaxops.to_jax.model import JaxModel, model_to_jax

# Every registration and patch the imports above declared, applied at once (see _upstream).
_upstream.install()

try:
    __version__: str = version("pymc_jaxops")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

# Public name -> module that defines it, imported on first attribute access.
_LAZY = {
    "JaxModel": "pymc_jaxops.to_jax.model",
    "model_to_jax": "pymc_jaxops.to_jax.model",
    "sample_blackjax_nuts": "pymc_jaxops.to_jax.blackjax_nuts",
}

__all__ = [
    "ConfigError",
    "JaxModel",
    "KernelTypeError",
    "as_pytensor_op",
    "clear_caches",
    "model_to_jax",
    "numba_to_jax",
    "register_jax_fallback",
    "sample_blackjax_nuts",
    "set_cpu_devices",
    "unregister_jax_fallback",
    "WorkerProcessError",
    "X64Error",
]


__getattr__, __dir__ = _lazy.attributes(globals(), _LAZY)
