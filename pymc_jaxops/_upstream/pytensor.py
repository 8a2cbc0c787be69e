"""PyTensor: the Op API of both lines, dispatch registrations, and the rewrite database.

=====================================  =====================  ======================
what                                   pytensor 2.38          pytensor 3.3
=====================================  =====================  ======================
an Op's gradient                       ``L_op``               ``pullback``
an Op's shapes                         ``infer_shape(fgraph,  ``infer_shape(node,
                                       node, shapes)``        shapes)``
``AdvancedSubtensor1``/``...Inc...1``  present                gone (3.2)
``_vectorize_node`` (private)          ``graph.replace``      ``graph.replace``
Numba object-mode call                 ``generate_fallback_impl`` (private), both
=====================================  =====================  ======================
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pytensor.tensor.subtensor as _subtensor
from pytensor.graph.op import Op

from pymc_jaxops._upstream._touches import Touch, declare
from pymc_jaxops._upstream.versions import at_least

__all__ = [
    "ADVANCED_INC_SUBTENSOR",
    "ADVANCED_SUBTENSOR",
    "JaxOpBase",
    "infer_shape",
    "object_mode_impl",
    "object_mode_launch",
    "one_node_runs_in_python",
    "pullback",
    "register_dispatch",
    "register_rewrite",
    "forget_ops_seen_by_rewriters",
    "rewriters_keep_no",
    "register_vectorize",
    "serialise_calls",
    "serialise_compilation",
    "wrapped_function",
]

PYTENSOR3 = at_least("pytensor", 3)

ADVANCED_SUBTENSOR: tuple[type, ...] = tuple(
    getattr(_subtensor, n)
    for n in ("AdvancedSubtensor", "AdvancedSubtensor1")
    if hasattr(_subtensor, n)
)
ADVANCED_INC_SUBTENSOR: tuple[type, ...] = tuple(
    getattr(_subtensor, n)
    for n in ("AdvancedIncSubtensor", "AdvancedIncSubtensor1")
    if hasattr(_subtensor, n)
)


class JaxOpBase(Op):
    """An Op written once for both lines: subclasses define ``pullback`` and ``shape_of``.

    ``shape_of(node, input_shapes)`` is PyTensor 3's ``infer_shape``; on PyTensor 2 the
    four-argument ``infer_shape`` and ``L_op`` forward to the two methods.
    """

    def shape_of(self, node: Any, input_shapes: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    if PYTENSOR3:

        def infer_shape(self, node, input_shapes):
            return self.shape_of(node, input_shapes)

    else:

        def infer_shape(self, fgraph, node, input_shapes):  # type: ignore[misc]
            return self.shape_of(node, input_shapes)

        def L_op(self, inputs, outputs, output_grads):
            return self.pullback(inputs, outputs, output_grads)


def infer_shape(op: Any, node: Any, input_shapes: Sequence[Any]) -> list[Any]:
    """Any Op's ``infer_shape``, called as its line expects."""
    if PYTENSOR3:
        return op.infer_shape(node, input_shapes)
    return op.infer_shape(None, node, input_shapes)


def pullback(op: Any, inputs: Sequence[Any], outputs: Sequence[Any], cts: Sequence[Any]) -> Any:
    """Any Op's gradient graph (``pullback`` on PyTensor 3, ``L_op`` before)."""
    if PYTENSOR3:
        return op.pullback(inputs, outputs, cts)
    return op.L_op(inputs, outputs, cts)


def wrapped_function(op: Any) -> Any:
    """The Python function a ``wrap_py``/``as_op`` Op calls, or None for other Ops."""
    return getattr(op, "_FromFunctionOp__fn", None)


def object_mode_impl(op: Any, node: Any, **kwargs: Any) -> Any:
    """Numba's object-mode call of ``op.perform`` (PyTensor's private fallback), without the
    warning PyTensor gives for an Op that lacks a Numba implementation: our callers run in
    object mode by design (one XLA launch per call)."""
    from pytensor.link.numba.dispatch.basic import generate_fallback_impl

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
        return generate_fallback_impl(op, node, **kwargs)


def object_mode_launch(node: Any, launch: Callable[..., Any], key: str) -> Callable[..., Any]:
    """A Numba function of ``node``'s inputs that enters Python once, to call
    ``launch(key, inputs)`` and return its outputs.

    The compiled code holds only ``key`` (a string) and ``launch`` (a module-level function,
    which Numba pickles by name), so Numba can cache it on disk: a process that compiles a
    graph with the same key loads it instead of compiling it again. ``launch`` finds what
    to run from ``key`` in its own process.
    """
    import numba
    from pytensor.link.numba.dispatch.basic import get_numba_type, numba_njit

    types = [get_numba_type(o.type) for o in node.outputs]
    ret_sig = types[0] if len(types) == 1 else numba.types.Tuple(types)

    @numba_njit
    def launch_xla(*inputs):
        with numba.objmode(ret=ret_sig):
            ret = launch(key, inputs)
        return ret

    return launch_xla


def _dispatcher(backend: str) -> Any:
    if backend == "jax":
        from pytensor.link.jax.dispatch import jax_funcify

        return jax_funcify
    if backend == "numba":
        from pytensor.link.numba.dispatch import numba_funcify

        return numba_funcify
    if backend == "numba_cache_key":  # Numba conversion that also returns a disk-cache key
        from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

        return numba_funcify_and_cache_key
    if backend == "jax_sample_fn":
        from pytensor.link.jax.dispatch.random import jax_sample_fn

        return jax_sample_fn
    if backend == "vectorize":
        from pytensor.graph.replace import _vectorize_node

        return _vectorize_node
    raise ValueError(backend)


def _register(dispatcher: Any, cls: type, impl: Callable[..., Any]) -> Callable[[], None]:
    previous = dispatcher.registry.get(cls)
    dispatcher.register(cls)(impl)

    def undo() -> None:
        if previous is not None:
            dispatcher.register(cls)(previous)
        else:  # singledispatch cannot forget a class: send it where its bases go
            dispatcher.register(cls)(dispatcher.dispatch(cls.__mro__[1]))

    return undo


def register_dispatch(
    backend: str,
    cls: type,
    impl: Callable[..., Any] | Callable[[Callable[..., Any]], Callable[..., Any]],
    *,
    wraps_previous: bool = False,
    only_if_missing: bool = False,
) -> Touch:
    """Declare ``impl`` as the ``backend`` conversion of ``cls`` (``jax``, ``numba``,
    ``numba_cache_key`` or ``jax_sample_fn``).

    With ``wraps_previous``, ``impl`` is called with what was registered before and returns
    the implementation; with ``only_if_missing`` nothing is registered where PyTensor
    already has one.
    """

    def apply() -> Callable[[], None] | None:
        dispatcher = _dispatcher(backend)
        before = dispatcher.dispatch(cls)
        if only_if_missing and before is not dispatcher.dispatch(object):
            return None
        return _register(dispatcher, cls, impl(before) if wraps_previous else impl)

    return declare(Touch(f"pytensor {backend} dispatch of {cls.__name__}", "pytensor", apply))


def register_vectorize(cls: type, impl: Callable[..., Any]) -> Touch:
    """Declare ``impl`` as how ``vectorize_graph`` batches a node of ``cls``."""

    def apply() -> Callable[[], None]:
        return _register(_dispatcher("vectorize"), cls, impl)

    return declare(Touch(f"pytensor vectorize of {cls.__name__}", "pytensor", apply, True))


def register_rewrite(name: str, rewriter: Any, *tags: str, position: float) -> Touch:
    """Declare ``rewriter`` in PyTensor's ``optdb`` at ``position`` with ``tags``."""

    def apply() -> Callable[[], None]:
        from pytensor.compile.mode import optdb

        if name in optdb:
            optdb.add_tags(name, *tags)
        else:
            optdb.register(name, rewriter, *tags, position=position)
        return functools.partial(optdb.remove_tags, name, *tags)

    return declare(Touch(f"pytensor rewrite {name}", "pytensor", apply))


class _Turns:
    """A lock that pickles as a new lock: an unpickled function is another function, and
    a ``threading.Lock`` cannot be pickled at all."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_Turns, ())


def serialise_calls(needs_turns: Callable[[Any], bool]) -> Touch:
    """Declare: concurrent calls of one compiled ``pytensor.compile.Function`` for which
    ``needs_turns(fn)`` is true take turns.

    A ``Function`` keeps its inputs and outputs in storage of its own, so two threads
    calling it at once can read each other's numbers. The C backend holds the GIL through a
    whole call, which hides that; a graph that launches XLA releases it mid-call. Each
    function decides once (on its first call); afterwards a function that needs no turns
    pays one dictionary lookup per call.
    """

    def apply() -> Callable[[], None]:
        from pytensor.compile import Function

        call = Function.__call__

        @functools.wraps(call)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            # Kept on the function's maker (PyTensor 3's Function has slots, no __dict__);
            # each copy and each unpickled function has a maker of its own.
            state = self.maker.__dict__
            turns = state.get("_pymc_jaxops_turns")
            if turns is None:
                # setdefault: two threads' first calls end up with the same lock
                candidate = _Turns() if needs_turns(self) else False
                turns = state.setdefault("_pymc_jaxops_turns", candidate)
            if not turns:
                return call(self, *args, **kwargs)
            with turns.lock:  # the lock itself: a Python-level __enter__ cost ~1 µs a call
                return call(self, *args, **kwargs)

        setattr(Function, "__call__", __call__)  # noqa: B010  (mypy: no method assignment)

        def undo() -> None:
            setattr(Function, "__call__", call)  # noqa: B010

        return undo

    return declare(Touch("pytensor Function calls that take turns", "pytensor", apply))


def forget_ops_seen_by_rewriters() -> None:
    """Empty the per-Op cache of PyTensor's node rewriters.

    ``OpToRewriterTracker.get_trackers`` is a ``functools.cache`` keyed by Op instance, with
    no bound: every Op that ever went through a rewrite stays alive, and with it whatever it
    holds (for a wrapped function, its closure and the data the closure holds). The cache
    only saves a lookup; it refills as graphs are rewritten again.
    """
    import gc

    from pytensor.graph.rewriting.basic import OpToRewriterTracker

    for obj in gc.get_objects():
        if issubclass(type(obj), OpToRewriterTracker):  # type(): safe on dead weak proxies
            # The instance's own cache, not what the class property of
            # ``rewriters_keep_no`` hands out in front of it.
            cached = vars(obj).get("get_trackers")
            if cached is not None and hasattr(cached, "cache_clear"):
                cached.cache_clear()


COMPILING = threading.RLock()
"""Held while PyTensor compiles a function in this process (see ``serialise_compilation``)."""


def serialise_compilation() -> Touch:
    """Declare: PyTensor compiles one function at a time in this process.

    Compiling sets ``pytensor.config.mode`` for its duration (``config.change_flags``, one
    value for the whole process) and restores what it found. Two threads compiling at once
    can each find the other's value, and the last to finish restores a temporary mode for
    good: the process's default backend silently becomes the C backend (and
    ``pm.sample()`` stops choosing nutpie). Chain threads compile when an absorbed graph
    falls back to the C backend; compilation is Python-bound, so taking turns costs little.
    """

    def apply() -> Callable[[], None]:
        from pytensor.compile import FunctionMaker

        originals = {name: getattr(FunctionMaker, name) for name in ("__init__", "create")}

        def in_turn(method: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(method)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with COMPILING:
                    return method(*args, **kwargs)

            return wrapper

        for name, method in originals.items():
            setattr(FunctionMaker, name, in_turn(method))

        def undo() -> None:
            for name, method in originals.items():
                setattr(FunctionMaker, name, method)

        return undo

    return declare(Touch("pytensor compiles one function at a time", "pytensor", apply))


def rewriters_keep_no(op_types: Callable[[], tuple[type, ...]]) -> Touch:
    """Declare: PyTensor's node rewriters look up the rewrites for Ops of ``op_types()``
    without caching them by instance.

    That cache (``OpToRewriterTracker.get_trackers``, per tracker, unbounded, keyed by Op
    instance) would keep every such Op alive for the life of the process, with the wrapped
    closure and data each one holds: memory grew with every ``pm.sample`` call. The
    lookup it saves is a few dictionary reads.
    """

    def apply() -> Callable[[], None]:
        from pytensor.graph.rewriting.basic import OpToRewriterTracker

        if "get_trackers" in vars(OpToRewriterTracker):
            raise AttributeError("OpToRewriterTracker.get_trackers is no longer per instance")

        def get(self: Any) -> Callable[[Any], Any]:
            cached = self.__dict__["get_trackers"]
            ours = op_types()

            def get_trackers(op: Any) -> Any:
                return self._get_trackers(op) if isinstance(op, ours) else cached(op)

            return get_trackers

        def set_(self: Any, value: Any) -> None:
            self.__dict__["get_trackers"] = value

        # A data descriptor on the class wins over the instance attribute PyTensor sets
        # in __init__, so trackers made before this touch are covered too.
        setattr(OpToRewriterTracker, "get_trackers", property(get, set_))  # noqa: B010

        def undo() -> None:
            delattr(OpToRewriterTracker, "get_trackers")

        return undo

    return declare(
        Touch("pytensor rewriters cache no wrapped Op", "pytensor", apply, private=True)
    )


def one_node_runs_in_python(python_call: Callable[[Any], Callable[[list], Any] | None]) -> Touch:
    """Declare: a Numba-linked graph that is one node, for which ``python_call(node)`` gives
    a callable of the input values, runs that callable from PyTensor's thunk.

    The node's Numba function would only enter Python again (object mode, to launch XLA):
    5-10 µs per call for nothing. It stays the linker's ``jit_fn`` (compiled when first
    called), for callers that need a Numba function (nutpie's Numba backend).
    """

    def apply() -> Callable[[], None]:
        from pytensor.link.numba.linker import NumbaLinker
        from pytensor.link.utils import raise_with_op

        original = NumbaLinker.create_jitable_thunk
        had_own = "create_jitable_thunk" in vars(NumbaLinker)

        @functools.wraps(original)
        def create_jitable_thunk(self: Any, *args: Any, **kwargs: Any) -> Any:
            thunks, nodes, jit_fn = original(self, *args, **kwargs)
            fgraph = self.fgraph
            if len(fgraph.apply_nodes) != 1 or len(thunks) != 1:
                return thunks, nodes, jit_fn
            (node,) = fgraph.apply_nodes
            run = python_call(node)
            if (
                run is None
                or list(node.inputs) != list(fgraph.inputs)
                or list(node.outputs) != list(fgraph.outputs)
            ):
                return thunks, nodes, jit_fn
            inputs, outputs = thunks[0].inputs, thunks[0].outputs

            def thunk() -> None:
                try:
                    values = run([cell[0] for cell in inputs])
                except Exception:
                    raise_with_op(fgraph, node, thunk)
                for cell, value in zip(outputs, values, strict=True):
                    cell[0] = value

            thunk.inputs = inputs  # type: ignore[attr-defined]
            thunk.outputs = outputs  # type: ignore[attr-defined]
            thunk.lazy = False  # type: ignore[attr-defined]
            return [thunk], nodes, jit_fn

        setattr(NumbaLinker, "create_jitable_thunk", create_jitable_thunk)  # noqa: B010

        def undo() -> None:
            if had_own:
                setattr(NumbaLinker, "create_jitable_thunk", original)  # noqa: B010
            else:
                delattr(NumbaLinker, "create_jitable_thunk")

        return undo

    return declare(
        Touch(
            "pytensor's Numba linker runs a one-node Python graph", "pytensor", apply, private=True
        )
    )
