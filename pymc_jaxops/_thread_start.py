"""Run a PyMC chain worker in a thread of this process, behind the ``Popen`` protocol.

For a model whose logp+gradient is one XLA computation worth hundreds of microseconds, a
chain process pays for what the parent already has: a fresh interpreter imports PyMC and
JAX (2 to 5 s on two cores), re-links the step's PyTensor functions and compiles the JAX
programs again, while the sampling itself mostly waits on XLA, which releases the GIL. So
:func:`pays` looks at the step's compiled logp+gradient in the parent: when it is one XLA
call (``pymc_jaxops._absorb``) that takes long enough, or when the chains are too short for
a process to pay for its start, :class:`Popen` runs PyMC's own worker function in a thread
of this process: no import, no compilation, one XLA runtime shared by the chains. PyMC's
messages still travel over its pipe and its draws through its shared memory, unchanged.

Each thread gets its own copy of the step method, made in the parent (PyTensor functions
keep their values in per-function storage, so two threads must not share one); the copies
share this process's jitted JAX functions and the plans timed here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import weakref
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import numpy as np

from pymc_jaxops import _caches
from pymc_jaxops._ops import for_this_machine
from pymc_jaxops._upstream import multiprocessing as _mp
from pymc_jaxops._upstream import pymc as _pymc

__all__ = ["PROCESS_START_S", "THREADS_ABOVE_S", "Popen", "pays", "usable"]

_logger = logging.getLogger("pymc")

THREADS_ABOVE_S = 150e-6
"""Chains run in threads when one logp+gradient call, all in XLA, takes at least this long.

Below it, PyMC's NUTS bookkeeping in Python (tens of microseconds a step, holding the GIL)
is a large share of each step and two threads would mostly take turns.
"""

PROCESS_START_S = 5.0
"""What starting a fresh chain process costs on two cores (import, re-link, compile).

Chains that, taking turns on the GIL in threads, would all end within this run in threads
even when the model is cheap: processes could not win back their start.
"""

# A rough chain length: leapfrog steps per draw, and PyMC's Python work per step.
_STEPS_PER_DRAW, _PYTHON_PER_STEP_S = 10, 50e-6


def _runs_in_xla(compiled: Any) -> bool:
    # Only then is a call's time spent where the GIL is released: PyTensor's C VM holds it.
    from pymc_jaxops._absorb import XlaGraphOp

    nodes = compiled.maker.fgraph.apply_nodes
    return len(nodes) == 1 and isinstance(next(iter(nodes)).op, XlaGraphOp)


def _seconds_per_call(compiled: Any, x: np.ndarray) -> float:
    # Usually warm already (PyMC evaluated it at the start point); the second call is where
    # a plan race times the default (_plans.py), so it is not measured either.
    compiled(x)
    compiled(x)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        compiled(x)
        best = min(best, time.perf_counter() - t0)
        if best >= THREADS_ABOVE_S:
            break
    return best


def _cores() -> int:
    return os.cpu_count() or 2


def _arguments(process_obj: Any) -> dict[str, Any] | None:
    """PyMC's worker arguments by name, if they are as this module knows them, with
    nothing it cannot copy."""
    bound = _pymc.bind_sample_worker_args(_mp.process_args(process_obj))
    if bound is None:
        return None
    args = bound.arguments
    if args.get("step_method_is_pickled") or args.get("zarr_chains") is not None:
        return None
    return args


def usable(process_obj: Any) -> bool:
    """Whether ``process_obj`` (a ``pm.sample`` chain process) can run in a thread."""
    return _arguments(process_obj) is not None


# One decision per step object: every chain of one pm.sample call gets the same answer.
_DECISIONS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_caches.register("chain-thread decisions", _DECISIONS.clear)


def pays(process_obj: Any) -> bool:
    """Whether ``process_obj`` (a ``pm.sample`` chain process) should run as a thread.

    True for gradient-based steps whose compiled logp+gradient is one XLA call
    (``pymc_jaxops._absorb``) taking at least :data:`THREADS_ABOVE_S` here (the chains then
    run side by side, the GIL released), or whose chains, even taking turns on the GIL, end
    sooner than processes could start (:data:`PROCESS_START_S`); False for everything else,
    or if it cannot be measured.
    """
    args = _arguments(process_obj)
    if args is None:
        return False
    step = args["step_method"]
    try:
        return _DECISIONS[step]
    except (KeyError, TypeError):
        pass
    try:
        decision = _decide(step, args)
    except Exception as error:  # a step PyMC changed: start a process, as before
        _logger.debug("pymc_jaxops: could not time the chain's logp+dlogp: %s", error)
        decision = False
    with contextlib.suppress(TypeError):
        _DECISIONS[step] = decision
    return decision


def _decide(step: Any, args: dict[str, Any]) -> bool:
    fns = _pymc.logp_dlogp_functions(step)
    if not fns:
        return False
    point = {
        name: np.frombuffer(a, dtype).reshape(shape)
        for name, (a, shape, dtype) in args["shared_point"].items()
    }
    seconds, in_xla = 0.0, True
    for compiled, names in fns:  # the step sets its extra (shared) values itself
        x = np.concatenate([np.ravel(point[name]) for name in names])
        seconds = max(seconds, _seconds_per_call(compiled, x))
        in_xla = in_xla and _runs_in_xla(compiled)
    if in_xla and seconds >= THREADS_ABOVE_S:
        return True
    # Taking turns on the GIL, n chains in threads cost about n chain lengths; in processes,
    # a start plus one chain length.
    draws = int(args["draws"]) + int(args["tune"])
    chain_s = draws * _STEPS_PER_DRAW * (seconds + _PYTHON_PER_STEP_S)
    others = max(1, _cores() - 1)
    return others * chain_s < PROCESS_START_S


class Popen:
    """A chain worker run in a daemon thread, with the interface ``Process`` expects.

    A thread cannot be killed: ``terminate`` shuts the worker's end of PyMC's pipe down, so
    the worker stops at its next message (after its current step), and reports the chain as
    ended at once, as a killed process would be.
    """

    method = "thread"

    def __init__(self, process_obj: Any) -> None:
        bound = _pymc.bind_sample_worker_args(_mp.process_args(process_obj))
        if bound is None or not usable(process_obj):
            raise ValueError(f"pymc_jaxops cannot run {process_obj.name!r} in a thread")
        args = bound.arguments
        # The worker's own step, copied here (not in the thread, beside other chains'
        # copies): its PyTensor functions have their own storage, and our Ops keep the
        # jitted functions and the plans timed in this process.
        with for_this_machine():
            step = cloudpickle.dumps(args["step_method"], protocol=-1)
            args["step_method"] = cloudpickle.loads(step)
        # PyMC closes its copy of the worker's end of the pipe right after start().
        self._conn = args["msg_pipe"] = Connection(os.dup(args["msg_pipe"].fileno()))
        self.pid = None  # no process of its own: nothing that could be signalled
        self.returncode: int | None = None
        self._terminated = False
        self.sentinel, done_w = os.pipe()  # EOF on sentinel once the thread is done
        self.finalizer = _mp.Finalize(self, _mp.close_fds, (self.sentinel,))
        self._thread = threading.Thread(
            target=self._run,
            args=(_mp.process_target(process_obj), list(bound.args), done_w),
            name=f"pymc_jaxops {process_obj.name}",
            daemon=True,
        )
        try:
            self._thread.start()
        except BaseException:
            os.close(done_w)
            self._conn.close()
            raise

    def _run(self, target: Any, args: list[Any], done_w: int) -> None:
        code = 1
        try:
            target(*args)  # PyMC's worker reports its own errors over the pipe
            code = 0
        except BaseException:
            if not self._terminated:
                _logger.exception("pymc_jaxops: chain thread failed")
        finally:
            self.returncode = code
            with contextlib.suppress(OSError):
                os.close(done_w)

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        if self._thread.is_alive():
            return -signal.SIGTERM if self._terminated else None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._terminated:
            self._thread.join(timeout)
        return self.poll()

    def terminate(self) -> None:
        if self._terminated or not self._thread.is_alive():
            return
        self._terminated = True
        with contextlib.suppress(OSError, ValueError):
            sock = socket.socket(fileno=os.dup(self._conn.fileno()))
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the worker's next recv() sees EOF
            finally:
                sock.close()

    kill = terminate

    def close(self) -> None:
        self.finalizer()
