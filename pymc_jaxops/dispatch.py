"""Backend registrations for the JAX Ops: one thin function per linker."""

from __future__ import annotations

from pytensor.link.jax.dispatch import jax_funcify

from pymc_jaxops.ops import JaxOp


@jax_funcify.register(JaxOp)
def _jax_funcify_jax_op(op: JaxOp, **kwargs):
    # The un-jitted function: the JAX linker (numpyro, blackjax, nutpie) jits the whole
    # model graph at once, so XLA sees through our Op.
    fn = op.fn
    if len(op.output_types) == 1:
        return lambda *args: fn(*args)[0]
    return fn
