"""A user's guarded script for bench_multiprocess.py: ``python mp_user_script.py MODEL CORES CTX``.

MODEL is ``hmm`` (the seed HMM, 2 chains x 200 tune / 200 draws) or ``cheap`` (a Normal
likelihood of 200 points, 2 chains x 1000 / 1000). CTX is ``default`` or a start method.
Prints one ``TIMES`` JSON line: seconds to import, to build the model, and in ``pm.sample``.
"""

import json
import sys
import time

t0 = time.perf_counter()
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402

from examples.marginal_hmm import build_model, simulate  # noqa: E402
from pymc_jaxops import as_pytensor_op  # noqa: E402

t_import = time.perf_counter() - t0


@as_pytensor_op
def normal_loglik(y, mu, sigma):
    return jnp.sum(-0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma))


def main() -> None:
    model_name, cores, ctx = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    t1 = time.perf_counter()
    if model_name == "hmm":
        model, draws = build_model(simulate()), 200
    else:
        y = np.random.default_rng(1).normal(1.5, 0.5, 200)
        with pm.Model() as model:
            mu = pm.Normal("mu", 0, 10)
            sigma = pm.HalfNormal("sigma", 2)
            pm.Potential("lik", normal_loglik(y, mu, sigma))
        draws = 1000
    t_build = time.perf_counter() - t1
    t2 = time.perf_counter()
    pm.sample(
        draws=draws,
        tune=draws,
        chains=2,
        cores=cores,
        model=model,
        random_seed=1,
        progressbar=False,
        compute_convergence_checks=False,
        mp_ctx=None if ctx == "default" else ctx,
    )
    t_sample = time.perf_counter() - t2
    times = {"import": t_import, "build": t_build, "sample": t_sample}
    print("TIMES", json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
