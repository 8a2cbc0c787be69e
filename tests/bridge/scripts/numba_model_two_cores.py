"""A PyMC model whose likelihood is a Numba function through numba_to_jax, sampled with
cores=2: the model (and so the bridged function) is pickled into spawned workers."""

import json

import jax
import numba
import numpy as np
import pymc as pm

from pymc_jaxops import as_pytensor_op, numba_to_jax


@numba.njit
def normal_loglik(y, mu, sigma):  # defined in __main__: workers get it by value
    return np.sum(-0.5 * ((y - mu) / sigma) ** 2) - y.size * np.log(sigma)


@numba.njit
def normal_loglik_grad(y, mu, sigma):
    z = (y - mu) / sigma
    return -z / sigma, np.sum(z) / sigma, np.sum(z * z) / sigma - y.size / sigma


loglik = numba_to_jax(normal_loglik, jax.ShapeDtypeStruct((), np.float64), grad=normal_loglik_grad)


@as_pytensor_op
def likelihood(y, mu, sigma):
    return loglik(y, mu, sigma)


if __name__ == "__main__":
    y = np.random.default_rng(1).normal(1.0, 0.5, 200)
    with pm.Model():
        mu = pm.Normal("mu", 0, 10)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Potential("lik", likelihood(y, mu, sigma))
        idata = pm.sample(
            draws=200,
            tune=200,
            chains=2,
            cores=2,
            nuts_sampler="pymc",  # PyMC's chain processes (pymc 6 would pick nutpie)
            random_seed=3,
            progressbar=False,
            compute_convergence_checks=False,
        )
    post = idata.posterior
    print(
        json.dumps(
            {
                "mu": float(post["mu"].mean()),
                "sigma": float(post["sigma"].mean()),
                "chains": int(post.sizes["chain"]),
                "ybar": float(y.mean()),
                "sd": float(y.std()),
            }
        )
    )
