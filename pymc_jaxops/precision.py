"""JAX's x64 switch, made explicit: PyMC computes in float64, JAX defaults to float32."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import jax
import numpy as np

_warned = False
_NEEDS_X64 = {np.dtype(t) for t in ("float64", "int64", "uint64", "complex128")}


def ensure_x64(dtypes: Iterable, what: str) -> None:
    """Turn JAX x64 on before tracing anything that holds a 64-bit dtype.

    Without it JAX would silently compute a float64 PyMC graph in float32. Importing
    ``pymc_jaxops`` already turns x64 on (through PyTensor's JAX dispatch); this catches a
    user who turned it off afterwards, and worker processes that unpickle an Op. It warns
    once per process when it has to flip the switch.
    """
    global _warned
    if jax.config.read("jax_enable_x64"):
        return
    if not any(np.dtype(d) in _NEEDS_X64 for d in dtypes):
        return
    jax.config.update("jax_enable_x64", True)
    if not _warned:
        _warned = True
        warnings.warn(
            f"{what} has 64-bit inputs or outputs but JAX x64 was off; pymc_jaxops turned "
            "`jax_enable_x64` on so PyMC's float64 graph is not computed in float32. "
            "Set it yourself at startup (`jax.config.update('jax_enable_x64', True)`) to "
            "silence this warning.",
            UserWarning,
            stacklevel=3,
        )
