"""The JAX programs of absorbed graphs: shared by equal graphs, kept a while after their last Op.

Each ``pm.sample`` compiles its model again, and a notebook re-run builds it again: each
time a new absorbed Op holds a graph equal to one run before. Equal graphs (the same Ops,
wrapped functions included, and the same constants, compared exactly by PyTensor's
``equal_computations``) share one graph function, so JAX finds its trace and XLA executable
in the bounded jit cache (``_jit.py``) instead of compiling them again, and share the plan
timed for them (``_plans.py``).

A program goes when the last Op running it has been collected and :data:`_KEEP` other
programs have gone since (or at ``clear_caches()``): repeated ``pm.sample`` calls reach a
plateau, and a model built again soon after finds its program.
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytensor.graph.basic import Variable, equal_computations
from pytensor.printing import debugprint

from pymc_jaxops import _caches
from pymc_jaxops._jit import forget

__all__ = ["canonical", "clear", "fingerprint", "graph_fn", "hold"]

_KEEP = 4
"""Programs kept after their last Op went, most recent first out last."""

_NAME = re.compile(r" '[^'\n]*'$", re.MULTILINE)


def fingerprint(outputs: Sequence[Variable]) -> str:
    """A hash of the graph as printed, less variable names (some are numbered per process).

    Equal graphs have equal fingerprints; the converse needs :func:`canonical`'s exact check
    (constants are abbreviated in the print).
    """
    text = _NAME.sub("", str(debugprint(list(outputs), file="str", print_type=True)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class _Graph:
    """A graph run before, by its key: what an equal graph is compared with."""

    inputs: list[Any]
    outputs: list[Any]
    key: str
    chosen: dict[str, str] = field(default_factory=dict)  # timed plan, shared by equal graphs


_LOCK = threading.RLock()
_GRAPHS: dict[str, list[_Graph]] = {}  # by fingerprint
# Graph functions by "key:plan", held weakly: alive while an Op (or a copy of it) or the
# kept programs hold one.
_GRAPH_FNS: weakref.WeakValueDictionary[str, Callable] = weakref.WeakValueDictionary()
_HOLDERS: dict[int, int] = {}  # live Ops per graph function
# Released holds, handled at the next hold. An Op's finalizer runs wherever the garbage
# collector happens to run, possibly in a thread that holds one of these locks or the jit
# cache's, so it only appends here (deque.append takes no lock of ours).
_RELEASED: collections.deque[tuple[Callable, bool, str]] = collections.deque()
_KEPT: collections.OrderedDict[int, tuple[Callable, bool, str]] = collections.OrderedDict()


def canonical(key: str, print_hash: str, inputs: list, outputs: list) -> tuple[str, dict]:
    """The key of an equal graph run before (or ``key``, now registered), and its plans."""
    with _LOCK:
        seen = _GRAPHS.setdefault(print_hash, [])
        for graph in seen:  # a pickled copy of an Op: its own graph
            if graph.key == key:
                return graph.key, graph.chosen
        for graph in seen:  # exactly equal: same Ops and constants, not only the same print
            if equal_computations(outputs, graph.outputs, inputs, graph.inputs):
                return graph.key, graph.chosen
        graph = _Graph(list(inputs), list(outputs), key)
        seen.append(graph)
        return key, graph.chosen


def graph_fn(key: str, plan: str, build: Callable[[], Callable]) -> Callable:
    """The graph function of ``key`` run by ``plan``: the one equal graphs share."""
    name = f"{key}:{plan}"
    with _LOCK:
        found = _GRAPH_FNS.get(name)
        if found is None:
            found = _GRAPH_FNS.setdefault(name, build())
        return found


def hold(op: object, fn: Callable, mode: bool, key: str) -> None:
    """``op`` runs ``fn`` in x64 ``mode``: keep its program while ``op`` lives (and a while)."""
    _drain()
    with _LOCK:
        _KEPT.pop(id(fn), None)  # running again
        _HOLDERS[id(fn)] = _HOLDERS.get(id(fn), 0) + 1
    weakref.finalize(op, _RELEASED.append, (fn, mode, key))


def _drain() -> None:
    while True:
        try:
            fn, mode, key = _RELEASED.popleft()
        except IndexError:
            return
        with _LOCK:
            left = _HOLDERS[id(fn)] - 1
            if left:
                _HOLDERS[id(fn)] = left
                continue
            del _HOLDERS[id(fn)]
            _KEPT[id(fn)] = (fn, mode, key)
            while len(_KEPT) > _KEEP:
                _forget(*_KEPT.popitem(last=False)[1])


def _forget(fn: Callable, mode: bool, key: str) -> None:
    forget(fn, mode)
    if any(n.startswith(f"{key}:") and f is not fn for n, f in list(_GRAPH_FNS.items())):
        return  # another plan of the graph still runs
    for seen in _GRAPHS.values():
        seen[:] = [g for g in seen if g.key != key]


def clear() -> None:
    """Forget every graph function and kept program (Ops built before keep working: each
    keeps its own function)."""
    _drain()
    with _LOCK:
        for fn, mode, _ in _KEPT.values():
            forget(fn, mode)
        _KEPT.clear()
        _GRAPH_FNS.clear()
        _GRAPHS.clear()


_caches.register("absorbed graph functions", clear)
