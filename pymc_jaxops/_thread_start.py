"""Run a PyMC chain worker in a thread of this process, behind the ``Popen`` protocol.

For a model whose logp+gradient is one XLA computation worth hundreds of microseconds, a
chain process pays for what the parent already has: a fresh interpreter imports PyMC and
JAX (2 to 5 s on two cores), re-links the step's PyTensor functions and compiles the JAX
programs again, while the sampling itself mostly waits on XLA, which releases the GIL. So
:func:`pays` measures one logp+gradient call of the step in the parent, and when it is
XLA-bound, :class:`Popen` runs PyMC's own worker function in a thread of this process: no
import, no compilation, one XLA runtime shared by the chains. PyMC's messages still travel
over its pipe and its draws through its shared memory, unchanged.

Each thread gets its own copy of the step method (PyTensor functions keep their values in
per-function storage, so two threads must not share one); the copies share this process's
jitted JAX functions and the plans timed here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from multiprocessing import util as _util
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import numpy as np

from pymc_jaxops.ops import for_this_machine

__all__ = ["PROCESS_START_S", "THREADS_ABOVE_S", "Popen", "pays"]

_logger = logging.getLogger("pymc")
util: Any = _util  # the standard library's private helpers have no type stubs

THREADS_ABOVE_S = 150e-6
"""Chains run in threads when one logp+gradient call of the model takes at least this long.

Below it, PyMC's NUTS bookkeeping in Python (tens of microseconds a step, holding the GIL)
is a large share of each step and two threads would mostly take turns.
"""

PROCESS_START_S = 5.0
"""What starting a fresh chain process costs on two cores (import, re-link, compile).

A chain expected to take less than this runs in a thread even when the model is cheap:
a process could not win back its start.
"""

# A rough chain length: leapfrog steps per draw, and PyMC's Python work per step.
_STEPS_PER_DRAW, _PYTHON_PER_STEP_S = 10, 50e-6

# PyMC's ``_run_process`` arguments, by position (pymc.sampling.parallel, PyMC 5.28.5).
_CONN, _STEP, _STEP_IS_PICKLED, _SHARED_POINT, _DRAWS, _TUNE, _ZARR = 1, 2, 3, 4, 5, 6, 11


def _logp_dlogp_functions(step: Any) -> list[Any]:
    methods = getattr(step, "methods", [step])  # a CompoundStep holds several
    return [m._logp_dlogp_func for m in methods if hasattr(m, "_logp_dlogp_func")]


def _seconds_per_call(fn: Any, shared_point: dict[str, Any]) -> float:
    point = {
        name: np.frombuffer(a, dtype).reshape(shape)
        for name, (a, shape, dtype) in shared_point.items()
    }
    x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    compiled = fn._pytensor_function  # the step sets its extra (shared) values itself
    compiled(x)  # compiled and warm already (PyMC evaluated it); once more for the caches
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        compiled(x)
        best = min(best, time.perf_counter() - t0)
    return best


def pays(process_obj: Any) -> bool:
    """Whether ``process_obj`` (a ``pm.sample`` chain process) should run as a thread.

    True for gradient-based steps whose logp+gradient call takes at least
    :data:`THREADS_ABOVE_S` here (XLA-bound: threads run in parallel), or whose chain is
    expected to take less than :data:`PROCESS_START_S` (a process cannot pay for its start);
    False for everything else, or if it cannot be measured.
    """
    args = getattr(process_obj, "_args", ())
    if len(args) <= _ZARR or args[_STEP_IS_PICKLED] or args[_ZARR] is not None:
        return False
    try:
        fns = _logp_dlogp_functions(args[_STEP])
        if not fns:
            return False
        seconds = max(_seconds_per_call(fn, args[_SHARED_POINT]) for fn in fns)
    except Exception as error:  # a step PyMC changed: start a process, as before
        _logger.debug("pymc_jaxops: could not time the chain's logp+dlogp: %s", error)
        return False
    draws = int(args[_DRAWS]) + int(args[_TUNE])
    chain_s = draws * _STEPS_PER_DRAW * (seconds + _PYTHON_PER_STEP_S)
    return seconds >= THREADS_ABOVE_S or chain_s < PROCESS_START_S


class Popen:
    """A chain worker run in a daemon thread, with the interface ``Process`` expects.

    ``terminate``/``kill`` cannot stop a thread; PyMC sends ``abort`` on its pipe before it
    terminates a worker, and the worker returns at its next message.
    """

    method = "thread"

    def __init__(self, process_obj: Any) -> None:
        args = list(process_obj._args)
        # The worker's own step: our Ops keep the jitted functions and plans of this process.
        with for_this_machine():
            args[_STEP] = cloudpickle.dumps(args[_STEP], protocol=-1)
        args[_STEP_IS_PICKLED] = True
        # PyMC closes its copy of the worker's end of the pipe right after start().
        args[_CONN] = Connection(os.dup(args[_CONN].fileno()))
        self.pid = os.getpid()
        self.returncode: int | None = None
        self.sentinel, self._done_w = os.pipe()  # EOF on sentinel once the thread is done
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))
        self._thread = threading.Thread(
            target=self._run,
            args=(process_obj._target, args),
            name=f"pymc_jaxops {process_obj.name}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, target: Any, args: list[Any]) -> None:
        code = 1
        try:
            target(*args)  # PyMC's worker reports its own errors over the pipe
            code = 0
        except BaseException:
            _logger.exception("pymc_jaxops: chain thread failed")
        finally:
            self.returncode = code
            with contextlib.suppress(OSError):
                os.close(self._done_w)

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        return None if self._thread.is_alive() else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._thread.join(timeout)
        return self.poll()

    def terminate(self) -> None:
        pass

    kill = terminate

    def close(self) -> None:
        self.finalizer()
