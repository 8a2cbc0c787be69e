"""Numba below its top-level API: what the XLA FFI bridge compiles with.

``numba.core`` and ``numba.np`` are Numba's internals (the same on 0.65 and 0.68).
"""

from __future__ import annotations

from typing import Any

from numba.core import cgutils
from numba.core.registry import CPUDispatcher
from numba.np.numpy_support import as_dtype

__all__ = ["as_dtype", "can_compile", "cgutils", "is_nopython_function"]


def can_compile(fn: Any) -> bool:
    """Whether a ``numba.njit`` function may still compile new signatures (False once
    ``fn.disable_compile()`` froze it to those it has)."""
    return bool(fn._can_compile)


def is_nopython_function(fn: Any) -> bool:
    """Whether ``fn`` is a ``numba.njit`` function (not forced into object mode)."""
    return isinstance(fn, CPUDispatcher) and not fn.targetoptions.get("forceobj", False)
