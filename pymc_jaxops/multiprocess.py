"""Never fork a live JAX runtime: a safe start method for ``pm.sample(cores>1)``.

On Linux, Python's default multiprocessing start method is ``fork``. PyMC evaluates the
model in the parent before it starts the chain processes (initial point, start-value
checks), so by then JAX's CPU runtime and its thread pools are live. A forked child
inherits the runtime but not its threads, and its first JAX call can wait forever on a
thread that does not exist (JAX warns "os.fork() was called ... will likely lead to a
deadlock"; the seed HMM hangs every time).

Importing :mod:`pymc_jaxops` wraps ``pymc.sampling.parallel.ParallelSampler.__init__``,
the one place that sees both the step method the workers will run and the start method
they will be started with. When all of these hold

* the start method is ``fork``,
* a compiled function of the step method holds a JAX Op (ours, or PyTensor's own
  ``wrap_jax`` Op), and
* JAX's runtime is already initialised in this process,

the chains are started with ``spawn`` instead: a fresh interpreter that imports
``pymc_jaxops`` (turning x64 on before anything is traced) and unpickles the step method,
whose Ops rebuild their jitted function. PyMC's sampling log says so in one INFO line.
An explicit ``mp_ctx="fork"`` is switched too (it would hang); ``"spawn"`` and
``"forkserver"`` are never changed.

``spawn`` rather than ``forkserver``: the fork server imports the user's ``__main__``
module and forks the workers from itself, so a script that touches JAX at import time
would put the same live runtime back in every worker.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.context
from collections.abc import Iterator
from typing import Any

import pymc.sampling.parallel as _parallel
from pytensor.compile.function.types import Function
from pytensor.graph.op import Op

from pymc_jaxops.ops import JaxOp

__all__ = ["safe_context"]

# PyMC's sampling logger prints at INFO by default, next to "Multiprocess sampling ...".
_logger = logging.getLogger(_parallel.__name__)
_SAFE_START_METHOD = "spawn"
_MAX_DEPTH = 6  # step -> CompoundStep.methods -> step -> ValueGradFunction -> Function


def _jax_op_types() -> tuple[type[Op], ...]:
    types: list[type[Op]] = [JaxOp]
    try:
        from pytensor.link.jax.ops import JAXOp  # pytensor.wrap_jax
    except ImportError:  # pragma: no cover - older PyTensor
        pass
    else:
        types.append(JAXOp)
    return tuple(types)


def _op_runs_jax(op: Op, jax_ops: tuple[type[Op], ...]) -> bool:
    if isinstance(op, jax_ops) or isinstance(getattr(op, "core_op", None), jax_ops):
        return True
    # Scan and OpFromGraph keep an inner graph that may call JAX too.
    inner = getattr(op, "fgraph", None)
    return inner is not None and any(_op_runs_jax(n.op, jax_ops) for n in inner.apply_nodes)


def _functions(obj: Any, depth: int = 0, seen: set[int] | None = None) -> Iterator[Function]:
    """Compiled PyTensor functions reachable from a step method's attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, Function):
        yield obj
        return
    # The model holds every graph, compiled or not: only what the step compiled matters.
    if type(obj).__name__ == "Model" or isinstance(obj, str | bytes | int | float):
        return
    if isinstance(obj, dict):
        children: Any = obj.values()
    elif isinstance(obj, list | tuple | set):
        children = obj
    else:
        children = getattr(obj, "__dict__", {}).values()
    for child in children:
        yield from _functions(child, depth + 1, seen)


def _step_runs_jax(step_method: Any) -> bool:
    """Whether any compiled function of ``step_method`` calls a JAX Op."""
    jax_ops = _jax_op_types()
    return any(
        _op_runs_jax(node.op, jax_ops)
        for fn in _functions(step_method)
        for node in fn.maker.fgraph.apply_nodes
    )


def _jax_runtime_live() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX moved it: assume the worst
        return True
    probe = getattr(xla_bridge, "backends_are_initialized", None)
    return True if probe is None else bool(probe())


def safe_context(
    mp_ctx: multiprocessing.context.BaseContext, step_method: Any
) -> multiprocessing.context.BaseContext:
    """Swap a ``fork`` context for ``spawn`` when the workers would inherit a live JAX runtime.

    ``fork`` is kept when the step method calls no JAX Op or JAX has not started in this
    process; every other start method is returned unchanged.

    Parameters
    ----------
    mp_ctx : multiprocessing context
        The context PyMC chose (on Linux, the fork context unless the user chose another).
    step_method : pymc step method
        The step the workers will run.

    Returns
    -------
    multiprocessing context
        ``mp_ctx`` itself, or the ``spawn`` context.

    Examples
    --------
    >>> import multiprocessing
    >>> safe_context(multiprocessing.get_context("spawn"), None).get_start_method()
    'spawn'
    """
    if mp_ctx.get_start_method() != "fork" or not _jax_runtime_live():
        return mp_ctx
    if not _step_runs_jax(step_method):
        return mp_ctx
    # PyMC has already resolved mp_ctx=None to the fork context, so an explicit "fork"
    # cannot be told apart here: both get the same line in PyMC's own sampling log.
    _logger.info(
        "pymc_jaxops: starting chain processes with %r instead of 'fork', because the "
        "model calls JAX and JAX's running runtime cannot be forked.",
        _SAFE_START_METHOD,
    )
    return multiprocessing.get_context(_SAFE_START_METHOD)


def _install() -> None:
    """Route ``ParallelSampler``'s start method through :func:`safe_context` (idempotent)."""
    cls = _parallel.ParallelSampler
    original = cls.__init__
    if getattr(original, "_pymc_jaxops_safe_context", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, mp_ctx=None, step_method=None, **kwargs):
        if mp_ctx is None or isinstance(mp_ctx, str):
            mp_ctx = _parallel._initialize_multiprocessing_context(mp_ctx)
        mp_ctx = safe_context(mp_ctx, step_method)
        original(self, *args, mp_ctx=mp_ctx, step_method=step_method, **kwargs)

    __init__._pymc_jaxops_safe_context = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


_install()
