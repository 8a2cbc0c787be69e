"""Backend registrations for the JAX Ops: one thin function per linker."""

from __future__ import annotations

import jax.numpy as jnp
from pytensor.link.jax.dispatch import jax_funcify

from pymc_jaxops.ops import JaxOp
from pymc_jaxops.precision import require_x64


@jax_funcify.register(JaxOp)
def _jax_funcify_jax_op(op: JaxOp, **kwargs):
    # The un-jitted function: the JAX linker (numpyro, blackjax, nutpie) jits the whole
    # model graph at once, so XLA sees through our Op.
    fn = op.fn
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
