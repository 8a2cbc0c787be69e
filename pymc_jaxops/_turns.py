"""Threads take turns where PyTensor is not thread-safe and our Ops make that matter.

* **Calls of one compiled function.** PyTensor documents its compiled functions as not
  thread-safe, and with the C backend a race is rare (the whole call holds the GIL). A
  function that launches one of our XLA programs releases the GIL in the middle of a call,
  which makes the race near-certain: four threads sharing one function got most answers
  wrong. Such functions serialise their calls; for parallel calls give each thread its own
  ``f.copy()``.
* **Compilation.** Compiling sets ``pytensor.config.mode`` for the whole process while it
  runs; two threads compiling at once (two chain threads whose absorbed graphs fall back to
  the C backend) could leave the process on the C backend for good.
"""

from __future__ import annotations

from typing import Any

from pytensor.graph.basic import Apply

from pymc_jaxops._absorb import XlaGraphOp
from pymc_jaxops._ops import JaxOp
from pymc_jaxops._upstream.pytensor import serialise_calls, serialise_compilation


def _launches_xla(nodes: list[Apply]) -> bool:
    for node in nodes:
        if isinstance(node.op, JaxOp | XlaGraphOp):
            return True
        inner = getattr(node.op, "fgraph", None)  # Scan, OpFromGraph: their inner graphs
        if inner is not None and _launches_xla(list(inner.apply_nodes)):
            return True
    return False


def holds_our_op(fn: Any) -> bool:
    """Whether the compiled function ``fn`` runs one of our Ops (in an inner graph too)."""
    maker = getattr(fn, "maker", None)
    return maker is not None and _launches_xla(list(maker.fgraph.apply_nodes))


serialise_calls(holds_our_op)
serialise_compilation()
