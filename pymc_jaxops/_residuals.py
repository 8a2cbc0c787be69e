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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
from pytensor.tensor.type import TensorType

from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp, _jitted
from pymc_jaxops._plans import fastest
from pymc_jaxops._shapes import OutputSignature, infer_outputs
from pymc_jaxops.precision import run_in

__all__ = ["JaxBackwardOp", "JaxForwardOp", "split_value_and_grad", "value_and_grad_plan"]


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
    """``primals -> (*outputs, *residuals, plan)``: a forward pass keeping what reverse needs."""

    fn: Callable
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return f"forward({getattr(self.fn, '__name__', 'jax_fn')})"

    def __call__(self, *primals):
        outs, vjp = _vjp(self.fn, primals, self.ct_mask, self.wrt_mask)
        return (*outs, *jax.tree.leaves(vjp), jnp.int8(0))


@dataclass(frozen=True)
class _Backward:
    """``(*primals, *residuals, plan, *cotangents) -> input cotangents``, no forward pass.

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
        specs = tuple((tuple(jnp.shape(p)), jnp.result_type(p).str) for p in primals)
        return self.from_specs(specs, *args[self.n_in :])

    def from_specs(self, specs: tuple, *args):
        """The backward pass given only the primals' ``(shape, dtype)`` (a static argument).

        ``args`` are the residuals, then the plan flag (ignored: only the split plan runs
        inside one JAX program), then the cotangents.
        """
        residuals, cotangents = args[: self.n_res], args[self.n_res + 1 :]
        captured = {}

        def structure(*p):
            outs, vjp = _vjp(self.fn, p, self.ct_mask, self.wrt_mask)
            captured["treedef"] = jax.tree.structure(vjp)
            return outs

        out_structs = jax.eval_shape(structure, *(jax.ShapeDtypeStruct(*s) for s in specs))
        vjp = jax.tree.unflatten(captured["treedef"], residuals)
        # PyTensor hands float64 cotangents to float32 outputs (and back): JAX wants exact
        # dtypes on both sides.
        connected = [o for o, m in zip(out_structs, self.ct_mask, strict=True) if m]
        cts = tuple(jnp.asarray(c, o.dtype) for c, o in zip(cotangents, connected, strict=True))
        wrt = [s for s, w in zip(specs, self.wrt_mask, strict=True) if w]
        return tuple(jnp.asarray(g, s[1]) for g, s in zip(vjp(cts), wrt, strict=True))


@dataclass(frozen=True)
class _GradOnly:
    """A value-and-grad function's input cotangents alone: XLA drops what only the outputs need.

    With a plain forward call for the outputs, this is the two-call plan of
    ``pytensor.wrap_jax``; on some ``lax.scan`` functions it is the fastest.
    """

    value_and_grad: Callable
    n_out: int

    def __call__(self, *args):
        return self.value_and_grad(*args)[self.n_out :]


def _grad_only(vg: JaxValueAndGradOp) -> Callable:
    # Kept on the Op: hashing the function value on every call would cost microseconds.
    try:
        return vg.__dict__["_grad"]
    except KeyError:
        fn = vg.__dict__["_grad"] = _jitted(_GradOnly(vg.fn, vg.n_primal_outputs), vg.x64_mode)
        return fn


_SPLIT, _TWO_CALLS = 0, 1  # values of the plan flag the forward Op hands to the backward Op
_FLAG = TensorType("int8", shape=())


def _specs(primals) -> tuple:
    return tuple((tuple(np.shape(p)), np.asarray(p).dtype.str) for p in primals)


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
        try:
            return self.__dict__["_vg"]
        except KeyError:
            vg = self.__dict__["_vg"] = JaxValueAndGradOp(self.base, self.ct_mask, self.wrt_mask)
            return vg

    @property
    def _placeholders(self) -> tuple[np.ndarray, ...]:
        # Empty residuals of the declared ranks and dtypes, for the two-call plan.
        try:
            return self.__dict__["_empty"]
        except KeyError:
            types = self.output_types[len(self.base.output_types) : -1]
            empty = tuple(np.zeros((0,) * t.ndim, t.dtype) for t in types)
            self.__dict__["_empty"] = empty
            return empty

    def plan(self, inputs) -> int:
        """The plan for these inputs' shapes: timed once, then remembered (see ``_ops.py``)."""
        chosen = self.__dict__.setdefault("_chosen", {})
        specs = _specs(inputs)
        if specs not in chosen:
            chosen[specs] = self._choose(inputs, specs) if self._fits(specs) else _TWO_CALLS
        return chosen[specs]

    def _fits(self, specs) -> bool:
        """Whether the residuals at these concrete shapes are those the graph declares.

        JAX may keep different residuals when it traces unknown dims symbolically than at
        concrete sizes; the two-call plan then runs instead (same numbers).
        """
        n_out = len(self.base.output_types)
        traced = jax.eval_shape(self.fn, *(jax.ShapeDtypeStruct(*s) for s in specs))
        residuals = traced[n_out:-1]
        declared = self.output_types[n_out:-1]
        return len(residuals) == len(declared) and all(
            r.dtype == np.dtype(t.dtype)
            and len(r.shape) == t.ndim
            and all(s is None or s == d for s, d in zip(t.shape, r.shape, strict=True))
            for r, t in zip(residuals, declared, strict=True)
        )

    def _choose(self, inputs, specs) -> int:
        n_out = len(self.base.output_types)
        backward = JaxBackwardOp(self)
        outs = jax.eval_shape(self.base.fn, *(jax.ShapeDtypeStruct(*s) for s in specs))
        # Cotangents of the right shapes; the cost of the pullback does not depend on them.
        cts = [jnp.ones(o.shape, o.dtype) for o, m in zip(outs, self.ct_mask, strict=True) if m]
        grads = _grad_only(self.value_and_grad_op())
        bwd = backward.jitted_from_specs

        def split():
            res = self.jitted(*inputs)[n_out:]  # with the flag
            return bwd(specs, *res, *cts)

        def two_calls():
            return self.base.jitted(*inputs), grads(*inputs, *cts)

        best = fastest("split", {"split": split, "two calls": two_calls})
        return _SPLIT if best == "split" else _TWO_CALLS

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
            _Backward(
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
        try:
            return self.__dict__["_jit_specs"]
        except KeyError:
            fn = run_in(
                self.x64_mode, jax.jit(cast(_Backward, self.fn).from_specs, static_argnums=0)
            )
            self.__dict__["_jit_specs"] = fn
            return fn

    def perform(self, node, inputs, output_storage):
        n_in, n_res = self.fn.n_in, self.fn.n_res
        primals = inputs[:n_in]
        flag = int(inputs[n_in + n_res])
        cotangents = inputs[n_in + n_res + 1 :]
        if flag == _SPLIT:
            grads = self.jitted_from_specs(
                _specs(primals), *inputs[n_in : n_in + n_res + 1], *cotangents
            )
        else:
            grads = _grad_only(self.forward.value_and_grad_op())(*primals, *cotangents)
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


def value_and_grad_plan(vg: JaxValueAndGradOp, inputs: Sequence) -> Callable:
    """How ``vg`` runs at these input shapes: the fastest of three equivalent plans.

    Its fused call; a forward pass keeping residuals + a backward pass; or a plain forward
    pass + a gradient-only call (``pytensor.wrap_jax``'s plan).

    Chosen by timing them on the first call (``_plans.py``) and remembered on the Op; a chain
    process gets the choice with the Op (``ops.for_this_machine``) and compiles only that plan.
    """
    plans = vg.__dict__.setdefault("_plans", {})
    specs = _specs(inputs)
    try:
        return plans[specs]
    except KeyError:
        pass
    fused = vg.jitted
    run = fused
    if any(vg.wrt_mask):
        n_in, n_out = vg.n_primal_inputs, vg.n_primal_outputs
        primal_specs = specs[:n_in]
        built: dict[str, Callable] = {}

        def split(*args):
            # Traced and compiled only if chosen, or if the fused call is slow enough to be
            # raced.
            if not built:
                forward = _ForwardWithResiduals(vg.base.fn, vg.ct_mask, vg.wrt_mask)
                structs = (jax.ShapeDtypeStruct(*s) for s in primal_specs)
                n_res = len(jax.eval_shape(forward, *structs)) - n_out - 1
                backward = _Backward(vg.base.fn, n_in, n_res, vg.ct_mask, vg.wrt_mask)
                built["fwd"] = _jitted(forward, vg.x64_mode)
                built["bwd"] = run_in(vg.x64_mode, jax.jit(backward.from_specs, static_argnums=0))
            res = built["fwd"](*args[:n_in])
            return (*res[:n_out], *built["bwd"](primal_specs, *res[n_out:], *args[n_in:]))

        plain, grads = vg.base.jitted, _grad_only(vg)

        def two_calls(*args):
            return (*plain(*args[:n_in]), *grads(*args))

        runs = {"fused": fused, "split": split, "two calls": two_calls}
        # Chosen in the process that pickled this Op for a chain process (_ops.py), or here.
        chosen = vg.__dict__.setdefault("_chosen", {})
        if chosen.get(specs) not in runs:
            candidates: dict[str, Callable[[], object]] = {
                name: functools.partial(r, *inputs) for name, r in runs.items()
            }
            chosen[specs] = fastest("fused", candidates)
        run = runs[chosen[specs]]
    plans[specs] = run
    return run
