"""PyMC's chain-process arguments are read by name, never by position."""

import numpy as np
import pymc as pm
from pymc.sampling.parallel import _run_process

from pymc_jaxops._upstream import pymc as upstream_pymc


class _Proc:
    _target = _run_process

    def __init__(self, *args):
        self._args = args


def test_arguments_bind_to_pymc_names():
    with pm.Model():
        pm.Normal("mu")
        step = pm.NUTS()
    args = ("worker_chain_0", "pipe", step, False, {"mu": 1}, 10, 20, None, 1, 0, "fork", None)
    bound = upstream_pymc.bind_sample_worker_args(_Proc(*args)._args)
    assert bound is not None
    a = bound.arguments
    assert a["step_method"] is step and a["msg_pipe"] == "pipe"
    assert (a["draws"], a["tune"], a["zarr_chains"]) == (10, 20, None)
    assert a["zarr_chains_is_pickled"] is False  # a default, filled in


def test_arguments_that_do_not_fit_are_not_read():
    assert upstream_pymc.bind_sample_worker_args(("too", "few")) is None


def test_a_steps_compiled_logp_and_its_input_names():
    with pm.Model():
        pm.Normal("mu")
        pm.HalfNormal("sigma")
        step = pm.NUTS()
    [(compiled, names)] = upstream_pymc.logp_dlogp_functions(step)
    assert sorted(names) == ["mu", "sigma_log__"]
    logp, grad = compiled(np.zeros(2))
    assert np.isfinite(logp) and grad.shape == (2,)
