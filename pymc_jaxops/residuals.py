"""Forward-with-residuals and backward Ops: one forward and one backward pass for any consumer.

When a wrapped function's output feeds a PyMC likelihood (``pm.Normal(mu=f(theta), ...)``),
the cotangent of that output is computed *from* the output, so the graph needs the forward
value before it can call the value-and-grad Op, which then runs the forward pass again.
Reverse mode needs neither: :class:`JaxForwardOp` returns the outputs together with the
residuals that ``jax.vjp`` keeps (the array leaves of the VJP pytree), and
:class:`JaxBackwardOp` turns residuals and cotangents into input cotangents without
re-running the forward pass. ``rewrites.py`` splits a value-and-grad node into these two
when its cotangents depend on the forward outputs.

The backward pass needs the VJP's pytree structure (which holds the linearized program) to
rebuild the VJP from residual arrays. It comes from an abstract trace (``jax.eval_shape``)
at the concrete input shapes inside the backward's own trace, so no forward computation is
emitted there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from pytensor.tensor.type import TensorType

from pymc_jaxops.ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops.shapes import OutputSignature, infer_outputs

__all__ = ["JaxBackwardOp", "JaxForwardOp"]


def _vjp(fn: Callable, primals: Sequence, ct_mask, wrt_mask):
    """``(outs, vjp)`` of ``fn`` w.r.t. the inputs in ``wrt_mask``, outputs in ``ct_mask``."""
    wrt = [i for i, w in enumerate(wrt_mask) if w]

    def restricted(*diff_args):
        full = list(primals)
        for i, value in zip(wrt, diff_args, strict=True):
            full[i] = value
        outs = fn(*full)
        return tuple(o for o, m in zip(outs, ct_mask, strict=True) if m), outs

    _, vjp, outs = jax.vjp(restricted, *[primals[i] for i in wrt], has_aux=True)
    return outs, vjp


@dataclass(frozen=True)
class _ForwardWithResiduals:
    """``primals -> (*outputs, *residuals)``: the forward pass that keeps what reverse mode needs."""

    fn: Callable
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return f"forward({getattr(self.fn, '__name__', 'jax_fn')})"

    def __call__(self, *primals):
        outs, vjp = _vjp(self.fn, primals, self.ct_mask, self.wrt_mask)
        return (*outs, *jax.tree.leaves(vjp))


@dataclass(frozen=True)
class _Backward:
    """``(*primals, *residuals, *cotangents) -> input cotangents``, without a forward pass.

    The primals are only looked at for their shapes and dtypes (XLA drops them).
    """

    fn: Callable
    n_in: int
    n_res: int
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return f"backward({getattr(self.fn, '__name__', 'jax_fn')})"

    def __call__(self, *args):
        primals = args[: self.n_in]
        residuals = args[self.n_in : self.n_in + self.n_res]
        cotangents = args[self.n_in + self.n_res :]
        captured = {}

        def structure(*p):
            outs, vjp = _vjp(self.fn, p, self.ct_mask, self.wrt_mask)
            leaves, captured["treedef"] = jax.tree.flatten(vjp)
            return outs

        out_structs = jax.eval_shape(
            structure, *(jax.ShapeDtypeStruct(jnp.shape(p), jnp.result_type(p)) for p in primals)
        )
        vjp = jax.tree.unflatten(captured["treedef"], residuals)
        # PyTensor hands float64 cotangents to float32 outputs (and back): JAX wants exact
        # dtypes on both sides.
        connected = [o for o, m in zip(out_structs, self.ct_mask, strict=True) if m]
        cts = tuple(jnp.asarray(c, o.dtype) for c, o in zip(cotangents, connected, strict=True))
        wrt = [p for p, w in zip(primals, self.wrt_mask, strict=True) if w]
        return tuple(
            jnp.asarray(g, jnp.result_type(p)) for g, p in zip(vjp(cts), wrt, strict=True)
        )


class JaxForwardOp(JaxOp):
    """``base``'s outputs followed by the residuals of its VJP (see the module docstring).

    Made by :func:`split_value_and_grad`; raises if the residuals cannot be typed.
    """

    __props__ = ("base", "ct_mask", "wrt_mask")
    __str__ = JaxOp.__str__

    def __init__(self, base: JaxOp, ct_mask: tuple[bool, ...], wrt_mask: tuple[bool, ...]):
        self.base = base
        self.ct_mask = tuple(ct_mask)
        self.wrt_mask = tuple(wrt_mask)
        fn = _ForwardWithResiduals(base.fn, self.ct_mask, self.wrt_mask)
        traced = infer_outputs(fn, base.input_types)
        n_out = len(base.output_types)
        if tuple(t.dtype for t in traced.types[:n_out]) != tuple(
            t.dtype for t in base.output_types
        ):
            raise TypeError(f"{base.name}: outputs changed under jax.vjp")
        bsig = base.signature
        # Keep the base's exact output types (so outputs replace one another) and add the
        # residuals' types and symbolic dims.
        signature = OutputSignature(
            types=(*bsig.types, *traced.types[n_out:]),
            dims=(*bsig.dims, *traced.dims[n_out:]),
            sources=tuple(sorted({**dict(traced.sources), **dict(bsig.sources)}.items())),
            treedef=None,
        )
        super().__init__(
            fn, base.input_types, signature, name=f"forward({base.name})",
            input_names=base.input_names,
        )  # fmt: skip

    @property
    def n_residuals(self) -> int:
        return len(self.output_types) - len(self.base.output_types)

    def L_op(self, inputs, outputs, output_grads):
        raise NotImplementedError(
            f"{self}: built by a compile-time rewrite; differentiate the graph before compiling."
        )


class JaxBackwardOp(JaxOp):
    """Input cotangents of ``forward.base`` from its primals, residuals and output cotangents."""

    __props__ = ("forward",)
    __str__ = JaxOp.__str__

    def __init__(self, forward: JaxForwardOp):
        self.forward = forward
        base = forward.base
        n_out = len(base.output_types)
        # Gradient types and dims exactly as the value-and-grad Op declares them.
        vg_sig = JaxValueAndGradOp(base, forward.ct_mask, forward.wrt_mask).signature
        signature = OutputSignature(
            types=vg_sig.types[n_out:],
            dims=vg_sig.dims[n_out:],
            sources=vg_sig.sources,
            treedef=None,
        )
        residual_types: tuple[TensorType, ...] = forward.output_types[n_out:]
        cotangent_types = [
            t for t, m in zip(base.output_types, forward.ct_mask, strict=True) if m
        ]
        super().__init__(
            _Backward(
                base.fn, len(base.input_types), len(residual_types), forward.ct_mask,
                forward.wrt_mask,
            ),
            (*base.input_types, *residual_types, *cotangent_types),
            signature,
            name=f"backward({base.name})",
            input_names=(
                *base.input_names,
                *(f"residual {k}" for k in range(len(residual_types))),
                *(f"cotangent of output {k}" for k, m in enumerate(forward.ct_mask) if m),
            ),
        )  # fmt: skip

    def L_op(self, inputs, outputs, output_grads):
        raise NotImplementedError(
            f"{self}: built by a compile-time rewrite; differentiate the graph before compiling."
        )


def split_value_and_grad(vg: JaxValueAndGradOp) -> tuple[JaxForwardOp, JaxBackwardOp] | None:
    """The forward/backward pair equivalent to ``vg``, or None if JAX cannot type residuals."""
    try:
        forward = JaxForwardOp(vg.base, vg.ct_mask, vg.wrt_mask)
    except Exception:
        return None
    return forward, JaxBackwardOp(forward)
