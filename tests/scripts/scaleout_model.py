"""A small model holding both kinds of foreign code: a JAX Op and a Numba function via FFI.

``y ~ Normal(mu, sigma)`` with the likelihood written in JAX (``@as_pytensor_op``) and the
prior of ``mu`` (Normal(0, 5)) written in Numba and called through ``numba_to_jax``. The
truth is ``mu = 1.5``, ``sigma = 0.7``.
"""

import jax
import jax.numpy as jnp
import numba
import numpy as np
import pymc as pm

from pymc_jaxops import as_pytensor_op, numba_to_jax

TRUE_MU, TRUE_SIGMA = 1.5, 0.7


@numba.njit
def _normal_prior(x):
    return -0.5 * (x / 5.0) ** 2


@numba.njit
def _normal_prior_grad(x):
    return -x / 25.0


numba_prior = numba_to_jax(
    _normal_prior, jax.ShapeDtypeStruct((), jnp.float64), grad=_normal_prior_grad
)


@as_pytensor_op
def loglik(y, mu, sigma):
    return jnp.sum(-0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma)) + numba_prior(mu)


def build_model(n: int = 200) -> pm.Model:
    y = np.random.default_rng(0).normal(TRUE_MU, TRUE_SIGMA, n)
    with pm.Model() as model:
        mu = pm.Flat("mu")
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Potential("lik", loglik(y, mu, sigma))
    return model


def report(idata) -> None:
    post = idata.posterior
    print(
        "RESULT",
        post.sizes["chain"],
        post.sizes["draw"],
        float(post["mu"].mean()),
        float(post["sigma"].mean()),
        flush=True,
    )
