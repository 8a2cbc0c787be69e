"""JAX samplers for PyTensor random variables that pytensor 2.38 leaves without one.

PyTensor's JAX backend draws from a ``RandomVariable`` through the singledispatch
``pytensor.link.jax.dispatch.random.jax_sample_fn``; with no registration, compiling a graph
that draws from e.g. ``pt.random.halfcauchy`` or ``pm.HalfNormal`` fails with
"No JAX implementation for the given distribution". Importing this module registers exact
samplers (transformations of JAX's standard draws) for the common continuous priors below.

An implementation that PyTensor already provides is never replaced, so a future PyTensor
that ships its own wins.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import pytensor.tensor.random.basic as ptr
from pytensor.link.jax.dispatch.random import jax_sample_fn

__all__: list[str] = []

_SampleFn = Callable[..., jax.Array]


def _half_loc_scale(standard: Callable[..., jax.Array]) -> Callable[..., _SampleFn]:
    # PyTensor's half-distributions are ``loc + scale * |X|`` with X the standard full one.
    def make(op, node) -> _SampleFn:
        def sample_fn(rng_key, size, dtype, loc, scale):
            if size is None:
                size = jnp.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
            return loc + scale * jnp.abs(standard(rng_key, size, dtype))

        return sample_fn

    return make


def _lognormal(op, node) -> _SampleFn:
    def sample_fn(rng_key, size, dtype, mean, sigma):
        if size is None:
            size = jnp.broadcast_shapes(jnp.shape(mean), jnp.shape(sigma))
        return jnp.exp(mean + sigma * jax.random.normal(rng_key, size, dtype))

    return sample_fn


def _invgamma(op, node) -> _SampleFn:
    # If G ~ Gamma(alpha, 1) then scale / G ~ InverseGamma(alpha, scale).
    def sample_fn(rng_key, size, dtype, alpha, scale):
        if size is None:
            size = jnp.broadcast_shapes(jnp.shape(alpha), jnp.shape(scale))
        return scale / jax.random.gamma(rng_key, alpha, size, dtype)

    return sample_fn


_SAMPLERS: dict[type, Callable[..., _SampleFn]] = {
    ptr.HalfCauchyRV: _half_loc_scale(jax.random.cauchy),
    ptr.HalfNormalRV: _half_loc_scale(jax.random.normal),
    ptr.LogNormalRV: _lognormal,
    ptr.InvGammaRV: _invgamma,
}

_missing = jax_sample_fn.dispatch(object)
for _rv_type, _factory in _SAMPLERS.items():
    if jax_sample_fn.dispatch(_rv_type) is _missing:
        jax_sample_fn.register(_rv_type)(_factory)
