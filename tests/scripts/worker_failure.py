"""A chain worker fails; the script (no main guard) must end with an error, never hang.

``python worker_failure.py MODE [ENTRY]``: MODE ``kill`` prints the workers' pids once they
sample (the test then SIGKILLs one), ``raise`` makes the JAX function raise in the workers,
``import`` makes the workers fail to import the module that holds the JAX function. ENTRY is
``nuts`` (default), ``smc`` or ``demetropolis``.
"""

import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pymc as pm

mode = sys.argv[1]
entry = sys.argv[2] if len(sys.argv) > 2 else "nuts"

# The JAX function lives in a module of its own, so the workers import it by name.
helper_dir = Path(tempfile.mkdtemp())
(helper_dir / "failing_helper.py").write_text(
    "import multiprocessing, os\n"
    "import jax.numpy as jnp\n"
    "from pymc_jaxops import as_pytensor_op\n"
    "@as_pytensor_op\n"
    "def loglik(y, mu):\n"
    "    in_worker = multiprocessing.parent_process() is not None\n"
    "    if in_worker and os.environ.get('FAILING_HELPER_RAISE') == '1':\n"
    "        raise RuntimeError('loglik failed inside the worker')\n"
    "    return jnp.sum(-0.5 * (y - mu) ** 2)\n"
)
sys.path.insert(0, str(helper_dir))
import failing_helper  # noqa: E402

if mode == "raise":
    os.environ["FAILING_HELPER_RAISE"] = "1"  # read by the workers when they trace loglik
elif mode == "import":
    (helper_dir / "failing_helper.py").unlink()  # the workers cannot import it any more


def report_workers() -> None:
    while True:
        children = multiprocessing.active_children()
        if len(children) >= 2:
            time.sleep(float(os.environ.get("WORKER_GRACE_S", "5")))
            print("WORKERS", *[c.pid for c in children], flush=True)
            return
        time.sleep(0.2)


threading.Thread(target=report_workers, daemon=True).start()
y = np.random.default_rng(0).normal(size=50)
with pm.Model():
    mu = pm.Normal("mu", 0, 1)
    pm.Potential("lik", failing_helper.loglik(y, mu))
    kw = dict(chains=2, cores=2, progressbar=False, compute_convergence_checks=False)
    nuts = {"nuts_sampler": "pymc"}  # PyMC's own chain processes, on pymc 6 too (not nutpie)
    if entry == "nuts":
        pm.sample(draws=10**6, tune=1000, **nuts, **kw)
    elif entry == "smc":
        pm.sample_smc(draws=20_000, **kw)
    else:
        pm.sample(draws=10**6, tune=1000, step=pm.DEMetropolis(), **{**kw, "chains": 3})
print("FINISHED", flush=True)
