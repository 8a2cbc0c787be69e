"""Backend registrations for the JAX Ops: one thin function per linker."""

from __future__ import annotations

from typing import cast

import jax.numpy as jnp
import numpy as np

from pymc_jaxops._jit import traced_once
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops._residuals import JaxBackwardOp, JaxForwardOp
from pymc_jaxops._upstream.pytensor import object_mode_impl, register_dispatch
from pymc_jaxops._vjp import PlanSwitch, TwoCalls, TwoCallsBackward, ValueAndGrad
from pymc_jaxops.precision import require_x64


def _by_plan(op: JaxOp):
    """What the JAX trace of ``op`` runs: its function, or under the two-call plan
    (``_vjp.PLAN``) a gradient's forward and gradient-only passes."""
    if isinstance(op, JaxValueAndGradOp) and any(op.wrt_mask):
        return PlanSwitch(op.fn, TwoCalls(cast(ValueAndGrad, op.fn)))
    if isinstance(op, JaxBackwardOp):
        fwd = op.forward
        fused = ValueAndGrad(fwd.base.fn, len(fwd.base.input_types), fwd.ct_mask, fwd.wrt_mask)
        return PlanSwitch(op.fn, TwoCallsBackward(fused, fwd.n_residuals))
    return op.fn


def _traced_before(op: JaxOp, fn):
    """``fn`` as JAX traces it inside a whole program.

    A plain forward pass, or one keeping its residuals, was traced at these types when the
    graph was built (for its output types); nested in ``jax.jit`` the program reuses that
    trace (``_jit.traced_once``). Plans chosen at trace time (``_vjp.PLAN``) are never
    nested, as their trace depends on more than the types.
    """
    if type(op) is JaxOp or isinstance(op, JaxForwardOp):
        return traced_once(fn)
    return fn


def _jax_funcify_jax_op(op: JaxOp, **kwargs):
    # The un-jitted function: the JAX linker (numpyro, blackjax, nutpie) jits the whole
    # model graph at once, so XLA sees through our Op.
    fn = _traced_before(op, _by_plan(op))
    dtypes = [t.dtype for t in (*op.input_types, *op.output_types)]
    out_dtypes = [t.dtype for t in op.output_types]
    what = f"JAX function {op.name!r}"

    def call(*args):
        # Inlined into the caller's trace, where no x64 scope can be opened: check the
        # switch each time JAX traces, and keep the output dtypes PyTensor was promised.
        require_x64(dtypes, what)
        outs = fn(*args)
        return tuple(jnp.asarray(o, d) for o, d in zip(outs, out_dtypes, strict=True))

    if len(op.output_types) == 1:
        return lambda *args: call(*args)[0]
    return call


class _NumpyOutputs:
    """``op`` whose ``perform`` hands back NumPy arrays only (Numba's object mode needs them)."""

    def __init__(self, op):
        self.op = op

    def __str__(self) -> str:
        return str(self.op)

    def perform(self, node, inputs, output_storage):
        self.op.perform(node, inputs, output_storage)
        for storage in output_storage:
            storage[0] = np.asarray(storage[0])


def _numba_funcify_jax_op(op: JaxOp, node=None, **kwargs):
    # Our Ops run XLA, not Numba: one object-mode call each, by design. JaxForwardOp's
    # residuals stay JAX arrays in the C VM; Numba must get NumPy ones.
    runs = _NumpyOutputs(op) if isinstance(op, JaxForwardOp) else op
    return object_mode_impl(runs, node, **kwargs)


register_dispatch("jax", JaxOp, _jax_funcify_jax_op)
register_dispatch("numba", JaxOp, _numba_funcify_jax_op)
