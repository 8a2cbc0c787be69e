"""Graph rewrites that keep a compiled logp+dlogp graph at one JAX call.

``fuse_value_and_grad`` runs in every PyTensor mode that includes ``fast_run`` (PyMC's
default C/VM mode, NUMBA and JAX). It

1. narrows each :class:`JaxValueAndGradOp` to the input gradients the graph really uses
   (or drops it for the forward Op when none is used), and
2. lets the forward :class:`JaxOp` take its outputs from a value-and-grad node on the same
   inputs, so the function runs once; or, when the cotangents are computed from the
   forward outputs (``pm.Normal(mu=f(x), observed=y)``), replaces the pair by a forward
   pass that keeps JAX's VJP residuals and a backward pass that consumes them
   (``_residuals.py``): one forward and one backward pass either way.
"""

from __future__ import annotations

from typing import cast

from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.graph.traversal import ancestors

from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops._residuals import split_value_and_grad
from pymc_jaxops._upstream.pytensor import register_rewrite

__all__ = ["fuse_value_and_grad"]


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
            if vg not in fgraph.apply_nodes:
                continue
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
                # If the cotangents depend on the forward outputs (a PyMC likelihood on
                # f(x), or log(f(x))), taking those outputs from the value-and-grad node
                # would make a cycle: split it into forward-with-residuals + backward.
                if set(fwd.outputs) & set(ancestors(vg.inputs[vg.op.n_primal_inputs :])):
                    _split(fgraph, fwd, vg)
                    break
                fgraph.replace_all(
                    list(zip(fwd.outputs, vg.outputs[: vg.op.n_primal_outputs], strict=True)),
                    reason="pymc_jaxops_fuse_value_and_grad",
                )


def _split(fgraph, fwd, vg) -> None:
    """Replace ``fwd`` and ``vg`` by one forward pass keeping residuals and one backward pass."""
    ops = split_value_and_grad(vg.op)
    if ops is None:
        return  # residuals not typable: two calls, still correct
    forward_op, backward_op = ops
    n_in, n_out = vg.op.n_primal_inputs, vg.op.n_primal_outputs
    primals, cotangents = vg.inputs[:n_in], vg.inputs[n_in:]
    forward = cast(list, forward_op(*primals, return_list=True))
    outs, residuals = forward[:n_out], forward[n_out:]
    grads = cast(list, backward_op(*primals, *residuals, *cotangents, return_list=True))
    pairs = list(zip(fwd.outputs, outs, strict=True))
    pairs += [(o, n) for o, n in zip(vg.outputs[:n_out], outs, strict=True) if fgraph.clients[o]]
    pairs += list(zip(vg.outputs[n_out:], grads, strict=True))
    fgraph.replace_all(pairs, reason="pymc_jaxops_split_value_and_grad")


fuse_value_and_grad = _FuseValueAndGrad()

register_rewrite(
    "pymc_jaxops_fuse_value_and_grad",
    fuse_value_and_grad,
    "fast_run",
    "fast_compile",
    position=48.5,
)
