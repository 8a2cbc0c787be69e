"""The bounded cache of jitted JAX functions: the only strong references to XLA executables.

Ops hold their jitted functions weakly: PyTensor's rewriters may keep an Op for the life of
the process, and an Op holding its executable would keep it as long.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import jax

from pymc_jaxops import _caches
from pymc_jaxops._xla_disk import on_disk
from pymc_jaxops.precision import run_in

__all__ = ["forget", "jitted", "traced_once"]

# Least recently used first.
_JIT_CACHE: OrderedDict[tuple[Callable, bool], Callable] = OrderedDict()
_JIT_CACHE_SIZE = 64
_JIT_CACHE_LOCK = threading.Lock()  # chains may run in threads (_thread_start.py)


def _clear() -> None:
    with _JIT_CACHE_LOCK:
        _JIT_CACHE.clear()


_caches.register("jitted JAX functions", _clear)


def jitted(fn: Callable, mode: bool) -> Callable:
    """``jax.jit(fn)`` run in x64 ``mode``; one per function value, shared by equal Ops;
    executables kept on disk (``_xla_disk``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from pymc_jaxops._jit import jitted
    >>> float(jitted(jnp.sin, True)(0.0))
    0.0
    """
    key = (fn, mode)
    with _JIT_CACHE_LOCK:
        found = _JIT_CACHE.get(key)
        if found is None:
            # Its executables come from disk when a session before (or the parent of this
            # chain process) compiled them.
            found = _JIT_CACHE.setdefault(key, run_in(mode, on_disk(jax.jit(_owned(fn)))))
            while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
                _JIT_CACHE.popitem(last=False)
        else:
            _JIT_CACHE.move_to_end(key)
    return found


def forget(fn: Callable, mode: bool) -> None:
    """Drop the executable of ``fn`` now: no Op can call ``fn`` any more."""
    with _JIT_CACHE_LOCK:
        _JIT_CACHE.pop((fn, mode), None)


def _owned(fn: Callable) -> Callable:
    """A fresh function calling ``fn``, to hand to ``jax.jit``.

    JAX caches traces and executables under the function object it is given for as long as
    that object lives, and ``fn`` lives as long as PyTensor keeps the Op; a fresh object
    owned by ``_JIT_CACHE`` lets them go when the cache evicts it.
    """

    def call(*args):
        return fn(*args)

    call.__name__ = call.__qualname__ = str(getattr(fn, "__name__", "jax_fn"))
    return call


def traced_once(fn: Callable) -> Callable:
    """``fn`` to call inside JAX traces: ``jax.jit(fn)``, whose trace JAX keeps by function
    and input types, so tracing it again at the same types (for the output types when the
    graph is built, then in a value-and-grad, then in the whole program) does not run the
    user's Python again; XLA inlines the nested call. ``fn`` itself if it is unhashable.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from pymc_jaxops._jit import traced_once
    >>> float(traced_once(jnp.cos)(0.0))
    1.0
    """
    try:
        hash(fn)
    except TypeError:
        return fn
    return jax.jit(fn)
