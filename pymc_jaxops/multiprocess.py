"""PyMC's chain processes never fork a live JAX runtime, and never re-run ``__main__``.

On Linux, multiprocessing starts processes with ``fork`` by default. Once JAX has run in a
process (PyMC evaluates the model before it starts the chains; a notebook has usually called
JAX already), its CPU runtime and thread pools are live; a forked child inherits the runtime
but not its threads, and its first JAX call can wait forever. ``spawn`` avoids that but
re-executes the user's ``__main__`` in every child, which breaks every script without an
``if __name__ == "__main__":`` guard.

PyMC starts chain processes in three places: ``ParallelSampler`` (``pm.sample`` with every
step method), ``ParallelSMCSampler`` (``pm.sample_smc``) and ``PopulationStepper``
(``DEMetropolis`` / ``DEMetropolisZ``), through a ``fork`` context on Linux, or a
``forkserver`` one where that is the default (Python 3.14) or the user's choice. They meet
in one spot, the start hook of those contexts' processes. :func:`install` (run by
``import pymc_jaxops``) wraps it (``pymc_jaxops._upstream.multiprocessing``). For a
process whose target is one of PyMC's three chain-worker functions:

* if JAX's runtime is live in this process, or the context is forkserver (whose server
  would import ``__main__``), it starts in a fresh interpreter that is not given
  ``__main__`` to run and receives its arguments through cloudpickle
  (``pymc_jaxops._fresh_start``), or, for ``pm.sample`` chains where that pays, in a
  thread of this process (``pymc_jaxops._thread_start``); otherwise it forks, as PyMC does;
* either way it is watched: if it ends before sending what the sampler waits for
  (killed, failed to start, an error it only logged), the sampler's ``recv()`` raises
  :class:`WorkerProcessError` instead of ``EOFError`` or waiting forever.

Every other process, and every process started with ``spawn``, is left alone.

Opt out with :func:`uninstall`, or by setting the environment variable
``PYMC_JAXOPS_SAFE_PROCESSES=0`` before ``import pymc_jaxops``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from pymc_jaxops import _config
from pymc_jaxops._upstream import _touches
from pymc_jaxops._upstream import jax as _jax
from pymc_jaxops._upstream import multiprocessing as _mp
from pymc_jaxops._upstream import pymc as _pymc
from pymc_jaxops.errors import WorkerProcessError

__all__ = ["WorkerProcessError", "install", "installed", "uninstall"]

_logger = logging.getLogger("pymc")
_TOUCH = "multiprocessing start of PyMC's chain processes"


def _wrap(original: Callable[[Any], Any], method: str) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def _popen(process_obj: Any) -> Any:
        from pymc_jaxops import _fresh_start

        if not _pymc.is_chain_worker(process_obj):
            return original(process_obj)
        if method == "fork" and not _jax.backends_are_initialized():
            popen = original(process_obj)  # nothing to inherit that could hang: fork is fine
            _fresh_start.watch(popen, process_obj)
            return popen
        threads = _config.chain_threads()
        if threads != "off" and _pymc.is_sample_worker(process_obj):
            from pymc_jaxops import _thread_start

            if _thread_start.usable(process_obj) and (
                threads == "always" or _thread_start.pays(process_obj)
            ):
                _logger.debug("pymc_jaxops: running %s in a thread", process_obj.name)
                return _thread_start.Popen(process_obj)
        _logger.debug(
            "pymc_jaxops: starting %s in a fresh interpreter instead of %s",
            process_obj.name,
            "forking the running JAX runtime" if method == "fork" else f"the {method} server",
        )
        return _fresh_start.Popen(process_obj)

    return _popen


def installed() -> bool:
    """Whether PyMC's chain processes are started safely (see the module docstring).

    Examples
    --------
    >>> import pymc_jaxops.multiprocess as mp
    >>> mp.installed()
    True
    """
    return _touches.installed(_TOUCH)


def install() -> None:
    """Start PyMC's chain processes safely from now on (done by ``import pymc_jaxops``).

    Idempotent. Hooks the start of the fork and forkserver contexts' processes; processes
    that are not PyMC chain workers, or that fork while JAX's runtime is not live, start as
    before.

    Examples
    --------
    >>> import pymc_jaxops.multiprocess as mp
    >>> mp.install()
    >>> mp.installed()
    True
    """
    _touches.apply(_START)


def uninstall() -> None:
    """Give ``multiprocessing`` its own process start back: the opt-out.

    After this, ``pm.sample(cores>1)``, ``pm.sample_smc`` and population samplers fork as
    PyMC does without ``pymc_jaxops``, which hangs once JAX has run in the process unless you
    pass ``mp_ctx="spawn"`` (and guard your script with ``if __name__ == "__main__":``).

    Examples
    --------
    >>> import pymc_jaxops.multiprocess as mp
    >>> mp.uninstall()
    >>> mp.installed()
    False
    >>> mp.install()
    """
    _touches.revert(_TOUCH)


_START = _mp.start_hook(_TOUCH, _wrap)
if _config.safe_processes():
    _touches.declare(_START)
