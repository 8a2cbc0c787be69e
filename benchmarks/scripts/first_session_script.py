"""A user's script for bench_first_session.py: ``python first_session_script.py WRAPPER MODEL``.

WRAPPER is ``ours`` (``as_pytensor_op``) or ``wrap_jax`` (``pytensor.wrap_jax``); MODEL a key
of ``bench_one_pass.CASES``. The script builds the model and runs ``pm.sample`` with its
defaults but for 2 chains of ``DRAWS`` tuning steps and draws (``DRAWS`` from the
environment, default 500), then builds it again and samples again (a notebook cell run
twice). Prints one ``TIMES`` JSON line: seconds to import, for the first build and sample,
for the second, and the first run's posterior means of the first three variables by name.
"""

import json
import os
import sys
import time
import warnings

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402
import pytensor  # noqa: E402

from benchmarks.bench_one_pass import CASES  # noqa: E402
from pymc_jaxops import as_pytensor_op  # noqa: E402

t_import = time.perf_counter() - t0


def main() -> None:
    wrapper, key = sys.argv[1], sys.argv[2]
    draws = int(os.environ.get("DRAWS", "500"))
    wrap = as_pytensor_op if wrapper == "ours" else pytensor.wrap_jax
    _, fn, make = CASES[key]
    walls, means = [], {}
    for run in range(2):
        t1 = time.perf_counter()
        model = make(wrap(fn))
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(
                draws=draws,
                tune=draws,
                chains=2,
                random_seed=1,
                progressbar=False,
                compute_convergence_checks=False,
            )
        walls.append(time.perf_counter() - t1)
        if run == 0:
            posterior = idata.posterior
            means = {
                name: np.round(np.asarray(posterior[name].mean(("chain", "draw"))), 3).tolist()
                for name in sorted(posterior.data_vars)[:3]  # the same names for both
            }
    times = {"import": t_import, "first": walls[0], "again": walls[1], "means": means}
    print("TIMES", json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
