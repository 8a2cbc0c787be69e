"""Numba kernels shared by the bridge tests, with jnp references."""

import jax.numpy as jnp
import numba
import numpy as np

LOC = np.array([-2.0, 0.0, 3.2, 2.5])
SCALE = np.array([1.2, 1.0, 5.0, 2.8])
WEIGHTS = np.array([0.2, 0.3, 0.1, 0.4])


@numba.njit
def mixture_logpdf(x):
    terms = (
        np.log(WEIGHTS) - np.log(SCALE) - 0.5 * np.log(2 * np.pi) - 0.5 * ((x - LOC) / SCALE) ** 2
    )
    m = terms.max()
    return m + np.log(np.sum(np.exp(terms - m)))


@numba.njit
def mixture_dlogpdf(x):
    z = (x - LOC) / SCALE
    terms = np.log(WEIGHTS) - np.log(SCALE) - 0.5 * z * z
    p = np.exp(terms - terms.max())
    return np.sum(p * (-z / SCALE)) / np.sum(p)


def mixture_logpdf_jnp(x):
    terms = (
        jnp.log(WEIGHTS)
        - jnp.log(SCALE)
        - 0.5 * jnp.log(2 * jnp.pi)
        - 0.5 * ((x - LOC) / SCALE) ** 2
    )
    return jax_logsumexp(terms)


def jax_logsumexp(t):
    import jax.scipy.special

    return jax.scipy.special.logsumexp(t)


@numba.njit
def affine_and_norm(x, a):
    """(a @ x, sum(x**2)): two inputs of different rank, two outputs (loops: no BLAS)."""
    y = np.zeros(a.shape[0], dtype=x.dtype)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            y[i] += a[i, j] * x[j]
    return y, np.sum(x * x)


@numba.njit
def affine_and_norm_vjp(x, a, ct_y, ct_s):
    gx = 2.0 * ct_s * x
    ga = np.empty_like(a)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            gx[j] += a[i, j] * ct_y[i]
            ga[i, j] = ct_y[i] * x[j]
    return gx, ga


def affine_and_norm_jnp(x, a):
    return a @ x, jnp.sum(x * x)
