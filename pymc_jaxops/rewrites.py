"""Graph rewrites that keep a compiled logp+dlogp graph at one JAX call.

``fuse_value_and_grad`` runs in every PyTensor mode that includes ``fast_run`` (PyMC's
default C/VM mode, NUMBA and JAX). It

1. narrows each :class:`JaxValueAndGradOp` to the input gradients the graph really uses
   (or drops it for the forward Op when none is used), and
2. lets the forward :class:`JaxOp` take its outputs from a value-and-grad node on the same
   inputs, so the function runs once.
"""

from __future__ import annotations

from pytensor.compile.mode import optdb
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.graph.traversal import ancestors

from pymc_jaxops.ops import JaxOp, JaxValueAndGradOp


class _FuseValueAndGrad(GraphRewriter):
    def add_requirements(self, fgraph):
        pass

    def apply(self, fgraph):
        self._narrow(fgraph)
        self._fuse(fgraph)

    @staticmethod
    def _narrow(fgraph):
        for node in list(fgraph.toposort()):
            if not isinstance(node.op, JaxValueAndGradOp) or node not in fgraph.apply_nodes:
                continue
            op, n_out = node.op, node.op.n_primal_outputs
            grads = node.outputs[n_out:]
            used = [bool(fgraph.clients[g]) for g in grads]
            if all(used):
                continue
            primals = node.inputs[: op.n_primal_inputs]
            if not any(used):
                new_outs = op.base(*primals, return_list=True)
                pairs = list(zip(node.outputs[:n_out], new_outs, strict=True))
            else:
                it = iter(used)
                wrt = tuple(w and next(it) for w in op.wrt_mask)
                new_outs = op.narrowed(wrt)(*node.inputs, return_list=True)
                kept = [g for g, u in zip(grads, used, strict=True) if u]
                pairs = list(zip([*node.outputs[:n_out], *kept], new_outs, strict=True))
            fgraph.replace_all(pairs, reason="pymc_jaxops_narrow_value_and_grad")

    @staticmethod
    def _fuse(fgraph):
        vg_nodes = [n for n in fgraph.toposort() if isinstance(n.op, JaxValueAndGradOp)]
        for vg in vg_nodes:
            primals = vg.inputs[: vg.op.n_primal_inputs]
            for client, _ in list(fgraph.clients.get(primals[0], ())) if primals else ():
                fwd = client if client != "output" else None
                if (
                    fwd is None
                    or fwd is vg
                    or not isinstance(fwd.op, JaxOp)
                    or fwd.op != vg.op.base
                    or fwd.inputs != primals
                    or fwd not in fgraph.apply_nodes
                ):
                    continue
                # The cotangents must not depend on the forward outputs (log(f(x)), say):
                # taking those outputs from the value-and-grad node would make a cycle.
                if set(fwd.outputs) & set(ancestors(vg.inputs[vg.op.n_primal_inputs :])):
                    continue
                fgraph.replace_all(
                    list(zip(fwd.outputs, vg.outputs[: vg.op.n_primal_outputs], strict=True)),
                    reason="pymc_jaxops_fuse_value_and_grad",
                )


fuse_value_and_grad = _FuseValueAndGrad()

optdb.register(
    "pymc_jaxops_fuse_value_and_grad",
    fuse_value_and_grad,
    "fast_run",
    "fast_compile",
    position=48.5,
)
