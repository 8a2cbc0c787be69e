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

from collections.abc import Callable
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
from pytensor.tensor.type import TensorType

from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops._plans import GradientPlans, Race, specs_of
from pymc_jaxops._shapes import OutputSignature, infer_outputs
from pymc_jaxops._vjp import Backward, ForwardWithResiduals, vjp_structure
from pymc_jaxops.precision import run_in, scoped

__all__ = ["JaxBackwardOp", "JaxForwardOp", "split_value_and_grad"]


_SPLIT, _TWO_CALLS = 0, 1  # values of the plan flag the forward Op hands to the backward Op
_FLAG = TensorType("int8", shape=())


class JaxForwardOp(JaxOp):
    """``base``'s outputs, the residuals of its VJP, and a plan flag (see the module docstring).

    Made by :func:`split_value_and_grad`; raises if the residuals cannot be typed. On its
    first evaluation at given input shapes it times this split plan against running the
    plain forward pass now and a fused value-and-grad later (see ``_plans.py``), and keeps
    the faster; the flag output tells the backward Op which one ran (residuals are empty
    placeholders under the second).
    """

    __props__ = ("base", "ct_mask", "wrt_mask")
    __str__ = JaxOp.__str__

    def __init__(self, base: JaxOp, ct_mask: tuple[bool, ...], wrt_mask: tuple[bool, ...]):
        self.base = base
        self.ct_mask = tuple(ct_mask)
        self.wrt_mask = tuple(wrt_mask)
        fn = ForwardWithResiduals(base.fn, self.ct_mask, self.wrt_mask)
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
            types=(*bsig.types, *traced.types[n_out:-1], _FLAG),
            dims=(*bsig.dims, *traced.dims[n_out:-1], ()),
            sources=tuple(sorted({**dict(traced.sources), **dict(bsig.sources)}.items())),
            treedef=None,
        )
        super().__init__(
            fn, base.input_types, signature, name=f"forward({base.name})",
            input_names=base.input_names,
        )  # fmt: skip

    @property
    def n_residuals(self) -> int:
        return len(self.output_types) - len(self.base.output_types) - 1

    def value_and_grad_op(self) -> JaxValueAndGradOp:
        """The fused Op of the same gradient (built once: it sits on the per-call path)."""
        runtime = self.runtime
        if runtime.value_and_grad is None:
            runtime.value_and_grad = JaxValueAndGradOp(self.base, self.ct_mask, self.wrt_mask)
        return runtime.value_and_grad

    @property
    def _placeholders(self) -> tuple[np.ndarray, ...]:
        # Empty residuals of the declared ranks and dtypes, for the two-call plan.
        runtime = self.runtime
        if runtime.placeholders is None:
            types = self.output_types[len(self.base.output_types) : -1]
            runtime.placeholders = tuple(np.zeros((0,) * t.ndim, t.dtype) for t in types)
        return runtime.placeholders

    def gradient_plans(self, specs: tuple) -> GradientPlans:
        """The jitted programs of this gradient at these primal specs (shared with the
        backward Op)."""
        runtime = self.runtime
        plans = runtime.plans.get(specs)
        if plans is None:
            plans = runtime.plans.setdefault(
                specs,
                GradientPlans(self.base.fn, self.ct_mask, self.wrt_mask, self.x64_mode, specs),
            )
        return plans

    def plan(self, inputs) -> int:
        """The plan for these inputs' shapes: timed while the calls go on (``_plans.py``)."""
        runtime = self.runtime
        specs = specs_of(inputs)
        settled = runtime.settled.get(specs)
        if settled is not None:
            return settled
        race = runtime.races.get(specs)
        if race is None:
            names = ("split", "two calls") if self._fits(specs) else ("two calls",)
            race = runtime.races[specs] = Race(names[0], names, self.chosen.get(specs))
        name = race.plan(tuple(inputs), lambda args: self._thunks(args, specs))
        flag = _SPLIT if name == "split" else _TWO_CALLS
        if race.winner is not None:
            self.chosen[specs] = race.winner
            runtime.settled[specs] = flag
        return flag

    def _fits(self, specs) -> bool:
        """Whether the residuals at these concrete shapes are those the graph declares.

        JAX may keep different residuals when it traces unknown dims symbolically than at
        concrete sizes; the two-call plan then runs instead (same numbers).
        """
        n_out = len(self.base.output_types)
        # Recorded when the graph was built (at these shapes, if they were static), so
        # usually no trace here.
        find = run_in(self.x64_mode, vjp_structure)
        residuals = find(self.base.fn, self.ct_mask, self.wrt_mask, specs).residuals
        declared = self.output_types[n_out:-1]
        return len(residuals) == len(declared) and all(
            r.dtype == np.dtype(t.dtype)
            and len(r.shape) == t.ndim
            and all(s is None or s == d for s, d in zip(t.shape, r.shape, strict=True))
            for r, t in zip(residuals, declared, strict=True)
        )

    def _thunks(self, inputs: tuple, specs: tuple) -> dict[str, Callable[[], object]]:
        """Both plans as whole passes (forward and backward) on ``inputs``."""
        plans = self.gradient_plans(specs)
        outs = plans.outputs
        # Cotangents of the right shapes; the cost of the pullback does not depend on them.
        with scoped(self.x64_mode):  # a float64 cotangent stays float64
            cts = [
                jnp.ones(o.shape, o.dtype) for o, m in zip(outs, self.ct_mask, strict=True) if m
            ]
        return {
            "split": lambda: plans.run("split")(*inputs, *cts),
            "two calls": lambda: plans.run("two calls")(*inputs, *cts),
        }

    def perform(self, node, inputs, output_storage):
        n_out = len(self.base.output_types)
        if self.plan(inputs) == _SPLIT:
            values = self.jitted(*inputs)[:-1]
            flag = _SPLIT
        else:
            values = (*self.base.jitted(*inputs), *self._placeholders)
            flag = _TWO_CALLS
        for storage, value in zip(output_storage[:n_out], values[:n_out], strict=True):
            storage[0] = np.array(value)  # writable: PyTensor may work in place on outputs
        # Residuals stay JAX arrays: only the backward Op reads them, and converting dozens
        # of solver checkpoints to NumPy and back would cost more than the pass itself.
        for storage, value in zip(output_storage[n_out:-1], values[n_out:], strict=True):
            storage[0] = value
        output_storage[-1][0] = np.array(flag, dtype="int8")

    def pullback(self, inputs, outputs, output_grads):
        raise NotImplementedError(
            f"{self}: built by a compile-time rewrite; differentiate the graph before compiling."
        )


class JaxBackwardOp(JaxOp):
    """Input cotangents of ``forward.base`` from primals, residuals, plan flag and cotangents."""

    __props__ = ("forward",)
    __str__ = JaxOp.__str__

    def __init__(self, forward: JaxForwardOp):
        self.forward = forward
        base = forward.base
        n_out = len(base.output_types)
        # Gradient types and dims exactly as the value-and-grad Op declares them.
        vg_sig = forward.value_and_grad_op().signature
        signature = OutputSignature(
            types=vg_sig.types[n_out:],
            dims=vg_sig.dims[n_out:],
            sources=vg_sig.sources,
            treedef=None,
        )
        residual_types: tuple[TensorType, ...] = forward.output_types[n_out:-1]
        cotangent_types = [t for t, m in zip(base.output_types, forward.ct_mask, strict=True) if m]
        super().__init__(
            Backward(
                base.fn, len(base.input_types), len(residual_types), forward.ct_mask,
                forward.wrt_mask,
            ),
            (*base.input_types, *residual_types, _FLAG, *cotangent_types),
            signature,
            name=f"backward({base.name})",
            input_names=(
                *base.input_names,
                *(f"residual {k}" for k in range(len(residual_types))),
                "plan",
                *(f"cotangent of output {k}" for k, m in enumerate(forward.ct_mask) if m),
            ),
        )  # fmt: skip

    @property
    def jitted_from_specs(self) -> Callable:
        runtime = self.runtime
        if runtime.backward_from_specs is None:
            from_specs = cast(Backward, self.fn).from_specs
            runtime.backward_from_specs = run_in(
                self.x64_mode, jax.jit(from_specs, static_argnums=0)
            )
        return runtime.backward_from_specs

    def perform(self, node, inputs, output_storage):
        n_in, n_res = self.fn.n_in, self.fn.n_res
        primals = inputs[:n_in]
        flag = int(inputs[n_in + n_res])
        cotangents = inputs[n_in + n_res + 1 :]
        if flag == _SPLIT:
            grads = self.jitted_from_specs(
                specs_of(primals), *inputs[n_in : n_in + n_res + 1], *cotangents
            )
        else:
            grads = self.forward.gradient_plans(specs_of(primals)).grad_only(*primals, *cotangents)
        for storage, value in zip(output_storage, grads, strict=True):
            storage[0] = np.array(value)

    def pullback(self, inputs, outputs, output_grads):
        raise NotImplementedError(
            f"{self}: built by a compile-time rewrite; differentiate the graph before compiling."
        )


def split_value_and_grad(vg: JaxValueAndGradOp) -> tuple[JaxForwardOp, JaxBackwardOp] | None:
    """The forward/backward pair equivalent to ``vg``, or None if JAX cannot type residuals.

    Parameters
    ----------
    vg : JaxValueAndGradOp

    Returns
    -------
    tuple of (JaxForwardOp, JaxBackwardOp), or None

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import pytensor.tensor as pt
    >>> from pymc_jaxops import as_pytensor_op
    >>> from pymc_jaxops._ops import JaxValueAndGradOp
    >>> y = as_pytensor_op(lambda v: jnp.sin(v) * v)(pt.vector("x", shape=(3,)))
    >>> forward, backward = split_value_and_grad(JaxValueAndGradOp(y.owner.op, (True,), (True,)))
    >>> forward.n_residuals, [str(t) for t in backward.output_types]
    (3, ['Vector(float64, shape=(3,))'])
    """
    try:
        forward = JaxForwardOp(vg.base, vg.ct_mask, vg.wrt_mask)
    except Exception:
        return None
    return forward, JaxBackwardOp(forward)
