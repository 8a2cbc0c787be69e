"""JAX samplers for PyTensor random variables that pytensor 2.38 draws wrongly or not at all.

PyTensor's JAX backend draws from a ``RandomVariable`` through the singledispatch
``pytensor.link.jax.dispatch.random.jax_sample_fn``; with no registration, compiling a graph
that draws from e.g. ``pt.random.halfcauchy`` or ``pm.HalfNormal`` fails with
"No JAX implementation for the given distribution". Importing this module registers exact
samplers (transformations of JAX's standard draws) for the common continuous priors below.
An implementation that PyTensor already provides is never replaced there, so a future
PyTensor that ships its own wins.

Corrections are the exception: PyTensor 2.38's categorical sampler hands ``logit(p)`` to
``jax.random.categorical``, which expects log-probabilities, so ``p=[0.2, 0.3, 0.5]`` draws
frequencies near ``[0.14, 0.26, 0.59]``. Those samplers are replaced unconditionally (an
exact sampler replacing a fixed one changes nothing).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import pytensor.tensor.random.basic as ptr
from pytensor.link.jax.dispatch import jax_funcify
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


def _categorical(op, node) -> _SampleFn:
    def sample_fn(rng_key, size, dtype, p):
        # ``jax.random.categorical`` takes log-probabilities (any constant offset), not
        # log-odds; log(0) = -inf is a category that is never drawn.
        draws = jax.random.categorical(rng_key, jnp.log(p), axis=-1, shape=size)
        return draws.astype(dtype)

    return sample_fn


_SAMPLERS: dict[type, Callable[..., _SampleFn]] = {
    ptr.HalfCauchyRV: _half_loc_scale(jax.random.cauchy),
    ptr.HalfNormalRV: _half_loc_scale(jax.random.normal),
    ptr.LogNormalRV: _lognormal,
    ptr.InvGammaRV: _invgamma,
}

_CORRECTIONS: dict[type, Callable[..., _SampleFn]] = {
    ptr.CategoricalRV: _categorical,
}

_missing = jax_sample_fn.dispatch(object)
for _rv_type, _factory in _SAMPLERS.items():
    if jax_sample_fn.dispatch(_rv_type) is _missing:
        jax_sample_fn.register(_rv_type)(_factory)
for _rv_type, _factory in _CORRECTIONS.items():
    jax_sample_fn.register(_rv_type)(_factory)

# PyTensor's JAX random variables advance their RNG by writing the new key into the state
# dict they are given. Two draws from one RNG state must agree (that is what the NumPy
# backend does, and what graphs like ``z / sqrt(einsum(z, z.copy()))`` in PyMC's LKJCorr
# rely on once rewrites duplicate the draw), but with a shared dict the second draw sees the
# first one's advanced key and returns different numbers: LKJCorr then yields "correlations"
# outside [-1, 1]. Handing each draw its own copy of the dict restores the semantics.
_funcify_rv = jax_funcify.dispatch(ptr.RandomVariable)


def _funcify_rv_without_shared_state(op, node=None, **kwargs):
    sample = _funcify_rv(op, node=node, **kwargs)

    def sample_fn(rng, size, *parameters):
        return sample(dict(rng), size, *parameters)

    return sample_fn


if _funcify_rv.__module__.startswith("pytensor."):  # not twice, and not over a newer fix
    jax_funcify.register(ptr.RandomVariable)(_funcify_rv_without_shared_state)
