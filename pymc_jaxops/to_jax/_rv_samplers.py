"""JAX samplers for PyTensor random variables that pytensor 2.38 draws wrongly or not at all.

PyTensor's JAX backend draws from a ``RandomVariable`` through the singledispatch
``pytensor.link.jax.dispatch.random.jax_sample_fn``; with no registration, compiling a graph
that draws from e.g. ``pt.random.halfcauchy`` or ``pm.HalfNormal`` fails with
"No JAX implementation for the given distribution". Importing this module registers exact
samplers (transformations of JAX's standard draws) for the distributions below, among them
PyMC's own random variables (``pm.TruncatedNormal``, ``pm.Wald``, ``pm.DiscreteUniform``...).
An implementation that PyTensor already provides is never replaced there, so a future
PyTensor that ships its own wins.

Corrections are the exception: PyTensor 2.38's categorical sampler hands ``logit(p)`` to
``jax.random.categorical``, which expects log-probabilities, so ``p=[0.2, 0.3, 0.5]`` draws
frequencies near ``[0.14, 0.26, 0.59]``. Those samplers are replaced unconditionally (an
exact sampler replacing a fixed one changes nothing). So is PyTensor's ``jax_funcify`` of
``RandomVariable``, wrapped so that draws sharing one RNG state agree (see the end of the
module); ``tests/to_jax/test_rv_samplers.py`` checks every distribution ``model_to_jax`` draws.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import pytensor.tensor.random.basic as ptr
from pymc.distributions.continuous import MoyalRV, RiceRV, SkewNormalRV, TruncatedNormalRV, WaldRV
from pymc.distributions.discrete import DiscreteUniformRV

from pymc_jaxops._upstream.pytensor import register_dispatch

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


def _batch(size, *params):
    return jnp.broadcast_shapes(*(jnp.shape(p) for p in params)) if size is None else size


def _weibull(op, node) -> _SampleFn:
    # NumPy's standard Weibull, ``(-log U) ** (1 / shape)``; pm.Weibull scales it.
    def sample_fn(rng_key, size, dtype, shape):
        size = _batch(size, shape)
        return jax.random.weibull_min(rng_key, 1.0, shape, size, dtype)

    return sample_fn


def _triangular(op, node) -> _SampleFn:
    # Inverse CDF, one uniform per draw.
    def sample_fn(rng_key, size, dtype, left, mode, right):
        size = _batch(size, left, mode, right)
        u = jax.random.uniform(rng_key, size, dtype)
        width = right - left
        below = left + jnp.sqrt(u * width * (mode - left))
        above = right - jnp.sqrt((1 - u) * width * (right - mode))
        return jnp.where(u < (mode - left) / width, below, above)

    return sample_fn


def _truncated_normal(op, node) -> _SampleFn:
    def sample_fn(rng_key, size, dtype, mu, sigma, lower, upper):
        size = _batch(size, mu, sigma, lower, upper)
        z = jax.random.truncated_normal(
            rng_key, (lower - mu) / sigma, (upper - mu) / sigma, size, dtype
        )
        return jnp.clip(mu + sigma * z, lower, upper)

    return sample_fn


def _wald(op, node) -> _SampleFn:
    # Michael, Schucany & Haas (1976): one normal and one uniform per draw.
    def sample_fn(rng_key, size, dtype, mu, lam, alpha):
        size = _batch(size, mu, lam, alpha)
        k_normal, k_uniform = jax.random.split(rng_key)
        y = jax.random.normal(k_normal, size, dtype) ** 2
        x = (
            mu
            + mu**2 * y / (2 * lam)
            - mu / (2 * lam) * jnp.sqrt(4 * mu * lam * y + (mu * y) ** 2)
        )
        u = jax.random.uniform(k_uniform, size, dtype)
        return alpha + jnp.where(u <= mu / (mu + x), x, mu**2 / x)

    return sample_fn


def _skew_normal(op, node) -> _SampleFn:
    # delta * |Z0| + sqrt(1 - delta^2) * Z1 is standard skew-normal with shape alpha.
    def sample_fn(rng_key, size, dtype, mu, sigma, alpha):
        size = _batch(size, mu, sigma, alpha)
        z = jax.random.normal(rng_key, (2, *size), dtype)
        delta = alpha / jnp.sqrt(1 + alpha**2)
        return mu + sigma * (delta * jnp.abs(z[0]) + jnp.sqrt(1 - delta**2) * z[1])

    return sample_fn


def _rice(op, node) -> _SampleFn:
    # The length of a 2-d normal vector centred at (b, 0), in units of sigma.
    def sample_fn(rng_key, size, dtype, b, sigma):
        size = _batch(size, b, sigma)
        z = jax.random.normal(rng_key, (2, *size), dtype)
        return sigma * jnp.hypot(z[0] + b, z[1])

    return sample_fn


def _moyal(op, node) -> _SampleFn:
    # If Z ~ N(0, 1), -log(Z^2) is standard Moyal.
    def sample_fn(rng_key, size, dtype, mu, sigma):
        size = _batch(size, mu, sigma)
        return mu - sigma * jnp.log(jax.random.normal(rng_key, size, dtype) ** 2)

    return sample_fn


def _discrete_uniform(op, node) -> _SampleFn:
    def sample_fn(rng_key, size, dtype, lower, upper):
        size = _batch(size, lower, upper)
        return jax.random.randint(rng_key, size, lower, upper + 1, dtype)

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
    ptr.WeibullRV: _weibull,
    ptr.TriangularRV: _triangular,
    TruncatedNormalRV: _truncated_normal,
    WaldRV: _wald,
    SkewNormalRV: _skew_normal,
    RiceRV: _rice,
    MoyalRV: _moyal,
    DiscreteUniformRV: _discrete_uniform,
}

_CORRECTIONS: dict[type, Callable[..., _SampleFn]] = {
    ptr.CategoricalRV: _categorical,
}

for _rv_type, _factory in _SAMPLERS.items():
    register_dispatch("jax_sample_fn", _rv_type, _factory, only_if_missing=True)
for _rv_type, _factory in _CORRECTIONS.items():
    register_dispatch("jax_sample_fn", _rv_type, _factory)


# PyTensor's JAX random variables advance their RNG by writing the new key into the state
# dict they are given. Two draws from one RNG state must agree (that is what the NumPy
# backend does, and what graphs like ``z / sqrt(einsum(z, z.copy()))`` in PyMC's LKJCorr
# rely on once rewrites duplicate the draw), but with a shared dict the second draw sees the
# first one's advanced key and returns different numbers: LKJCorr then yields "correlations"
# outside [-1, 1]. Handing each draw its own copy of the dict restores the semantics.
def _without_shared_state(funcify_rv: Callable[..., Any]) -> Callable[..., Any]:
    def funcify(op, node=None, **kwargs):
        sample = funcify_rv(op, node=node, **kwargs)

        def sample_fn(rng, size, *parameters):
            return sample(dict(rng), size, *parameters)

        return sample_fn

    return funcify


register_dispatch("jax", ptr.RandomVariable, _without_shared_state, wraps_previous=True)
