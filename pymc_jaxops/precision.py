"""JAX's x64 switch: the one precision policy every part of pymc_jaxops applies.

JAX computes in 32-bit unless its global ``jax_enable_x64`` switch is on; PyTensor turns
that switch on when imported with ``floatX="float64"`` (PyMC's default) and off with
``floatX="float32"``. pymc_jaxops never flips the global switch. Instead:

1. **A JAX computation runs in the precision its PyTensor types say.** A wrapped function
   is traced with x64 on when any of its input types is 64-bit (float64, int64, uint64,
   complex128); otherwise in the mode the global switch has when it is wrapped. That mode
   is part of the Op: the Op's function always runs in it (a thread-local
   ``jax.enable_x64`` scope), whatever the global switch says later, in worker processes
   too. So a float64 graph is computed in float64, and a float32 graph keeps the
   output dtypes JAX reported when it was traced: float32 stays float32.
2. **Where our code is inlined into a JAX trace we do not own** (PyTensor's JAX mode, and
   the NumPyro / BlackJAX / nutpie samplers built on it; ``model_to_jax``'s functions; the
   Numba bridge), a mode cannot be scoped. There a 64-bit type met while x64 is off raises
   :class:`X64Error` each time JAX traces, so switching x64 off after building fails at the
   next call rather than computing in 32-bit.

The functions below are the only places that read the switch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

from pymc_jaxops.errors import X64Error

__all__ = [
    "X64Error",
    "mode_of",
    "needs_x64",
    "require_x64",
    "run_in",
    "scoped",
    "trace_mode",
    "x64_enabled",
]

_X64_DTYPES = frozenset(np.dtype(t) for t in ("float64", "int64", "uint64", "complex128"))


def _is_wide(dtype: Any) -> bool:
    try:
        return np.dtype(dtype) in _X64_DTYPES
    except TypeError:  # not an array dtype (a random generator's, say)
        return False


def x64_enabled() -> bool:
    """The global switch, as JAX reads it now (thread-local scopes included)."""
    return bool(jax.config.read("jax_enable_x64"))


def needs_x64(dtypes: Iterable[Any]) -> bool:
    """Whether any of ``dtypes`` is 64-bit, so JAX must compute it with x64 on."""
    return any(_is_wide(d) for d in dtypes)


def trace_mode(dtypes: Iterable[Any]) -> bool:
    """The x64 mode to trace (and later run) a function with inputs of ``dtypes``."""
    return needs_x64(dtypes) or x64_enabled()


def mode_of(fn: Callable, dtypes: Iterable[Any]) -> bool:
    """The x64 mode ``fn`` was traced in.

    Wrapped functions record it as ``x64``; functions built from them (value-and-grad,
    vmap) keep the original as ``fn``. A function with no record runs in the mode its
    types need, or the global one.
    """
    inner: Any = fn
    while inner is not None:
        mode = getattr(inner, "x64", None)
        if isinstance(mode, bool):
            return mode or needs_x64(dtypes)
        inner = getattr(inner, "fn", None)
    return trace_mode(dtypes)


def scoped(mode: bool) -> contextlib.AbstractContextManager:
    """A context in which JAX traces and runs with x64 ``mode``; the global switch is kept."""
    if x64_enabled() == mode:
        return contextlib.nullcontext()
    return jax.enable_x64(mode)


def run_in(mode: bool, fn: Callable) -> Callable:
    """``fn``, always called with x64 ``mode`` (for the jitted function of an Op)."""

    def call(*args):
        if x64_enabled() == mode:
            return fn(*args)
        with jax.enable_x64(mode):
            return fn(*args)

    return call


def require_x64(dtypes: Iterable[Any], what: str) -> None:
    """Raise :class:`X64Error` if ``dtypes`` hold a 64-bit type while x64 is off.

    For code inlined into a JAX trace someone else owns. Call it where the value is
    produced (inside the traced function), not only when the object is built: JAX re-traces
    a jitted function when the switch changes.
    """
    if x64_enabled():
        return
    wide = sorted({str(np.dtype(d)) for d in dtypes if _is_wide(d)})
    if wide:
        raise X64Error(
            f"{what} computes in {', '.join(wide)} but JAX's x64 mode is off, so JAX would "
            "silently compute it in 32-bit. Turn it on once at startup with "
            "`jax.config.update('jax_enable_x64', True)` (importing pymc_jaxops does this "
            "when PyTensor's floatX is float64), or build the model with 32-bit types "
            "(PYTENSOR_FLAGS=floatX=float32)."
        )
