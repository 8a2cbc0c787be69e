"""PyMC's chain processes never fork a live JAX runtime, and never re-run ``__main__``.

On Linux, multiprocessing starts processes with ``fork`` by default. Once JAX has run in a
process (PyMC evaluates the model before it starts the chains; a notebook has usually called
JAX already), its CPU runtime and thread pools are live; a forked child inherits the runtime
but not its threads, and its first JAX call can wait forever. ``spawn`` avoids that but
re-executes the user's ``__main__`` in every child, which breaks every script without an
``if __name__ == "__main__":`` guard.

PyMC starts chain processes in three places, all through a ``fork`` context on Linux:
``ParallelSampler`` (``pm.sample`` with every step method), ``ParallelSMCSampler``
(``pm.sample_smc``) and ``PopulationStepper`` (``DEMetropolis`` / ``DEMetropolisZ``). They
meet in one spot, the ``_Popen`` of multiprocessing's fork context. :func:`install` (run by
``import pymc_jaxops``) wraps that one function. For a process whose target is one of PyMC's
three chain-worker functions:

* if JAX's runtime is live in this process, it starts in a fresh interpreter that is not
  given ``__main__`` to run and receives its arguments through cloudpickle
  (``pymc_jaxops._fresh_start``); otherwise it forks, as PyMC does;
* either way a thread watches it: if it ends before sending what the sampler waits for
  (killed, failed to start, an error it only logged), the sampler's ``recv()`` raises
  :class:`WorkerProcessError` instead of ``EOFError`` or waiting forever.

Every other process, and every process started with ``spawn`` or ``forkserver``, is left
alone.

Opt out with :func:`uninstall`, or by setting the environment variable
``PYMC_JAXOPS_SAFE_PROCESSES=0`` before ``import pymc_jaxops``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import multiprocessing.context
import os
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerProcessError", "install", "installed", "uninstall"]

_logger = logging.getLogger("pymc")
_ENV_VAR = "PYMC_JAXOPS_SAFE_PROCESSES"
_THREADS_ENV_VAR = "PYMC_JAXOPS_CHAIN_THREADS"
# Absent on Windows, where there is no fork to make safe.
_FORK_PROCESS: Any = getattr(multiprocessing.context, "ForkProcess", None)
_MARK = "_pymc_jaxops_fresh_start"


# Where PyMC keeps the function each chain process runs (verified on PyMC 5.28.5). A name
# that moves in another version is skipped: its processes then start as PyMC starts them.
_PYMC_CHAIN_WORKERS = (
    ("pymc.sampling.parallel", "_run_process"),
    ("pymc.smc.parallel", "_run_smc_process"),
    ("pymc.sampling.population", "PopulationStepper._run_secondary"),
)


@functools.cache
def _pymc_chain_workers() -> tuple[Callable[..., Any], ...]:
    found = []
    for module_name, qualname in _PYMC_CHAIN_WORKERS:
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            _logger.debug("pymc_jaxops: no %s.%s in this PyMC", module_name, qualname)
            continue
        found.append(obj)
    return tuple(found)


class WorkerProcessError(RuntimeError):
    """A PyMC chain process ended before it sent what its sampler was waiting for.

    Raised in the parent, from the sampler's wait on the process, with the process's name,
    its pid and how it ended (killed by a signal, an exit code, the error it failed to start
    with).
    """


def _jax_runtime_live() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX moved it: assume the worst
        return True
    probe = getattr(xla_bridge, "backends_are_initialized", None)
    return True if probe is None else bool(probe())


def _is_chain_worker(process_obj: Any) -> bool:
    return getattr(process_obj, "_target", None) in _pymc_chain_workers()


def _is_sample_worker(process_obj: Any) -> bool:
    """A ``pm.sample`` chain (not SMC's or a population sampler's)."""
    try:
        from pymc.sampling.parallel import _run_process
    except ImportError:
        return False
    return getattr(process_obj, "_target", None) is _run_process


def _chain_threads() -> str:
    """``PYMC_JAXOPS_CHAIN_THREADS``: "off", "always", or (anything else) "auto"."""
    value = os.environ.get(_THREADS_ENV_VAR, "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "always" if value == "always" else "auto"


def _wrap(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def _popen(process_obj: Any) -> Any:
        from pymc_jaxops import _fresh_start

        if not _is_chain_worker(process_obj):
            return original(process_obj)
        if not _jax_runtime_live():
            popen = original(process_obj)  # nothing to inherit that could hang: fork is fine
            _fresh_start.watch(popen, process_obj)
            return popen
        threads = _chain_threads()
        if threads != "off" and _is_sample_worker(process_obj):
            from pymc_jaxops import _thread_start

            usable = _thread_start._usable(getattr(process_obj, "_args", ()))
            if usable and (threads == "always" or _thread_start.pays(process_obj)):
                _logger.debug("pymc_jaxops: running %s in a thread", process_obj.name)
                return _thread_start.Popen(process_obj)
        _logger.debug(
            "pymc_jaxops: starting %s in a fresh interpreter instead of forking the running "
            "JAX runtime",
            process_obj.name,
        )
        return _fresh_start.Popen(process_obj)

    setattr(_popen, _MARK, original)
    return _popen


def installed() -> bool:
    """Whether PyMC's chain processes are started safely (see the module docstring).

    Examples
    --------
    >>> import pymc_jaxops.multiprocess as mp
    >>> mp.installed()
    True
    """
    return _FORK_PROCESS is not None and hasattr(_FORK_PROCESS._Popen, _MARK)


def install() -> None:
    """Start PyMC's chain processes safely from now on (done by ``import pymc_jaxops``).

    Idempotent. Wraps ``multiprocessing.context.ForkProcess._Popen``; processes that are not
    PyMC chain workers, or that start while JAX's runtime is not live, still fork.

    Examples
    --------
    >>> import pymc_jaxops.multiprocess as mp
    >>> mp.install()
    >>> mp.installed()
    True
    """
    if _FORK_PROCESS is not None and not installed():
        _FORK_PROCESS._Popen = staticmethod(_wrap(_FORK_PROCESS._Popen))


def uninstall() -> None:
    """Give ``multiprocessing`` its own ``fork`` start back: the opt-out.

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
    original = getattr(getattr(_FORK_PROCESS, "_Popen", None), _MARK, None)
    if original is not None:
        _FORK_PROCESS._Popen = staticmethod(original)


if os.environ.get(_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off"):
    install()
