"""Every error class pymc_jaxops raises, also exported from ``pymc_jaxops`` itself.

Examples
--------
>>> import pymc_jaxops
>>> issubclass(pymc_jaxops.X64Error, TypeError)
True
"""

from __future__ import annotations

from pymc_jaxops._config import ConfigError

__all__ = ["ConfigError", "KernelTypeError", "WorkerProcessError", "X64Error"]


class X64Error(TypeError, RuntimeError):
    """A 64-bit type meets JAX with x64 off, where pymc_jaxops cannot scope the mode.

    Both a ``TypeError`` (a dtype JAX cannot honour) and a ``RuntimeError`` (a process
    setting), so code that caught either from earlier versions keeps working.
    """


class KernelTypeError(TypeError):
    """A function given to the bridge cannot be compiled for, or does not return, what the
    call declares; raised while JAX traces, naming the function."""


class WorkerProcessError(RuntimeError):
    """A PyMC chain process ended before it sent what its sampler was waiting for.

    Raised in the parent, from the sampler's wait on the process, with the process's name,
    its pid and how it ended (killed by a signal, an exit code, the error it failed to start
    with).
    """
