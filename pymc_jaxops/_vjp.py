"""The pure-JAX functions a gradient plan is made of, each a hashable callable.

A wrapped function's gradient can run as one fused program (:class:`ValueAndGrad`), as a
forward pass keeping JAX's VJP residuals followed by a backward pass consuming them
(:class:`ForwardWithResiduals`, :class:`Backward`), or as a plain forward pass followed by
a gradient-only call (:class:`GradOnly`, the plan of ``pytensor.wrap_jax``). All three give
the same numbers; ``_plans.py`` times them and keeps the fastest. The Ops of ``_ops.py``
and ``_residuals.py`` wrap these functions; JAX mode inlines them into the model's trace.

PyTensor may hand a cotangent in another dtype than its output's (a float64 cotangent of a
float32 output, say) and expects each gradient in its input's dtype: the casts both ways
live here, once.

Examples
--------
>>> import jax.numpy as jnp
>>> from pymc_jaxops._vjp import ValueAndGrad
>>> def f(x):
...     return (jnp.sum(x**2),)
>>> value, grad = ValueAndGrad(f, 1, (True,), (True,))(jnp.array([1.0, 2.0]), 1.0)
>>> float(value), grad.tolist()
(5.0, [2.0, 4.0])
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pymc_jaxops import _caches
from pymc_jaxops._jit import traced_once
from pymc_jaxops.precision import x64_enabled

__all__ = [
    "PLAN",
    "Backward",
    "ForwardWithResiduals",
    "GradOnly",
    "PlanSwitch",
    "TwoCalls",
    "TwoCallsBackward",
    "ValueAndGrad",
    "VjpStructure",
    "vjp_structure",
]

PLAN: ContextVar[str] = ContextVar("pymc_jaxops_plan", default="fused")
"""The plan a trace made now inlines for a gradient: ``"fused"`` or ``"two calls"``
(``_absorb.py`` traces a whole graph under each to time them)."""


def _restricted_vjp(fn: Callable, primals: Sequence, ct_mask, wrt_mask):
    """``(outs, vjp)`` of ``fn`` w.r.t. the inputs in ``wrt_mask``, outputs in ``ct_mask``.

    JAX never builds the VJP of what nobody asked for.
    """
    wrt = [i for i, w in enumerate(wrt_mask) if w]
    call = traced_once(fn)  # its trace for the output types is differentiated, not redone

    def restricted(*diff_args):
        full = list(primals)
        for i, value in zip(wrt, diff_args, strict=True):
            full[i] = value
        outs = call(*full)
        return tuple(o for o, m in zip(outs, ct_mask, strict=True) if m), outs

    _, vjp, outs = jax.vjp(restricted, *[primals[i] for i in wrt], has_aux=True)
    return outs, vjp


def _pull(vjp, cotangents: Sequence, outs: Sequence, ct_mask, wrt_dtypes: Sequence) -> tuple:
    """Input cotangents from output cotangents, cast as JAX and PyTensor each want them."""
    connected = [o for o, m in zip(outs, ct_mask, strict=True) if m]
    cts = tuple(jnp.asarray(c, o.dtype) for c, o in zip(cotangents, connected, strict=True))
    return tuple(jnp.asarray(g, d) for g, d in zip(vjp(cts), wrt_dtypes, strict=True))


def _wrt_dtypes(primals: Sequence, wrt_mask) -> list:
    return [jnp.result_type(p) for p, w in zip(primals, wrt_mask, strict=True) if w]


def _name(what: str, fn: Callable) -> str:
    return f"{what}({getattr(fn, '__name__', 'jax_fn')})"


@dataclass(frozen=True)
class ValueAndGrad:
    """``(*primals, *cotangents) -> (*outputs, *input cotangents)`` in one JAX trace.

    Only outputs flagged in ``ct_mask`` receive a cotangent, and only inputs flagged in
    ``wrt_mask`` are differentiated.
    """

    fn: Callable
    n_in: int
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    def __call__(self, *args):
        primals, cotangents = args[: self.n_in], args[self.n_in :]
        outs, vjp = _restricted_vjp(self.fn, primals, self.ct_mask, self.wrt_mask)
        grads = _pull(vjp, cotangents, outs, self.ct_mask, _wrt_dtypes(primals, self.wrt_mask))
        return (*outs, *grads)


@dataclass(frozen=True)
class GradOnly:
    """A value-and-grad function's input cotangents alone: XLA drops what only the outputs need.

    With a plain forward call for the outputs, this is the two-call plan of
    ``pytensor.wrap_jax``; on some ``lax.scan`` functions it is the fastest.
    """

    value_and_grad: Callable
    n_out: int

    def __call__(self, *args):
        return self.value_and_grad(*args)[self.n_out :]


# The VJP structure (pytree definition, holding the linearized program) and output specs of
# a function at given input specs, recorded when a forward pass traces it: the backward
# pass traced next (in the same whole-graph program, or its own jitted call) rebuilds its
# VJP from these instead of tracing the function once more (a diffrax solve's trace took
# about a second).
class VjpStructure(NamedTuple):
    """What a trace of a function's VJP at given input specs tells without running it."""

    treedef: Any  # the VJP's pytree definition (its leaves are the residuals)
    outputs: tuple  # ShapeDtypeStruct of each output
    residuals: tuple  # ShapeDtypeStruct of each residual


_STRUCTURES: OrderedDict[tuple, VjpStructure] = OrderedDict()
_STRUCTURES_SIZE = 16  # needed from a forward trace to its backward trace only
_STRUCTURES_LOCK = threading.Lock()  # traced from background threads too (plan races)


def _clear_structures() -> None:
    with _STRUCTURES_LOCK:
        _STRUCTURES.clear()


_caches.register("VJP structures of traced functions", _clear_structures)


def _specs(primals: Sequence) -> tuple:
    return tuple((tuple(jnp.shape(p)), jnp.result_type(p).str) for p in primals)


def _structure_key(fn: Callable, ct_mask, wrt_mask, specs: tuple) -> tuple:
    return (fn, tuple(ct_mask), tuple(wrt_mask), specs, x64_enabled())


def _structs(values: Sequence) -> tuple:
    return tuple(jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for v in values)


def _remember(key: tuple, vjp: Any, outs: Sequence) -> VjpStructure:
    leaves, treedef = jax.tree.flatten(vjp)
    entry = VjpStructure(treedef, _structs(outs), _structs(leaves))
    with _STRUCTURES_LOCK:
        _STRUCTURES[key] = entry
        _STRUCTURES.move_to_end(key)
        while len(_STRUCTURES) > _STRUCTURES_SIZE:
            _STRUCTURES.popitem(last=False)
    return entry


def _recalled(key: tuple) -> VjpStructure | None:
    with _STRUCTURES_LOCK:
        return _STRUCTURES.get(key)


def vjp_structure(fn: Callable, ct_mask, wrt_mask, specs: tuple) -> VjpStructure:
    """The structure of ``fn``'s VJP at input ``specs``, as a forward pass recorded it when
    JAX traced it (in the x64 mode on now), else from an abstract trace here."""
    key = _structure_key(fn, ct_mask, wrt_mask, specs)
    found = _recalled(key)
    if found is not None:
        return found
    traced = []

    def structure(*p):
        outs, vjp = _restricted_vjp(fn, p, ct_mask, wrt_mask)
        traced.append(_remember(key, vjp, outs))
        return outs

    jax.eval_shape(structure, *(jax.ShapeDtypeStruct(*s) for s in specs))
    return traced[0]


@dataclass(frozen=True)
class ForwardWithResiduals:
    """``primals -> (*outputs, *residuals, plan)``: a forward pass keeping what reverse needs."""

    fn: Callable
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return _name("forward", self.fn)

    def __call__(self, *primals):
        outs, vjp = _restricted_vjp(self.fn, primals, self.ct_mask, self.wrt_mask)
        key = _structure_key(self.fn, self.ct_mask, self.wrt_mask, _specs(primals))
        _remember(key, vjp, outs)
        return (*outs, *jax.tree.leaves(vjp), jnp.int8(0))


@dataclass(frozen=True)
class Backward:
    """``(*primals, *residuals, plan, *cotangents) -> input cotangents``, no forward pass.

    The primals are only looked at for their shapes and dtypes (XLA drops them). The VJP's
    pytree structure, which holds the linearized program, is the one the forward pass
    recorded when it was traced at those shapes, or else comes from an abstract trace
    (``jax.eval_shape``); either way no forward computation is emitted.
    """

    fn: Callable
    n_in: int
    n_res: int
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return _name("backward", self.fn)

    def __call__(self, *args):
        return self.from_specs(_specs(args[: self.n_in]), *args[self.n_in :])

    def from_specs(self, specs: tuple, *args):
        """The backward pass given only the primals' ``(shape, dtype)`` (a static argument).

        ``args`` are the residuals, then the plan flag (ignored: only the split plan runs
        inside one JAX program), then the cotangents.
        """
        residuals, cotangents = args[: self.n_res], args[self.n_res + 1 :]
        treedef, out_structs, _ = vjp_structure(self.fn, self.ct_mask, self.wrt_mask, specs)
        vjp = jax.tree.unflatten(treedef, residuals)
        wrt_dtypes = [s[1] for s, w in zip(specs, self.wrt_mask, strict=True) if w]
        return _pull(vjp, cotangents, out_structs, self.ct_mask, wrt_dtypes)


@dataclass(frozen=True)
class TwoCalls:
    """``value_and_grad``'s outputs by a plain forward pass and its gradients by a
    gradient-only one: the two-call plan inlined into one trace."""

    value_and_grad: ValueAndGrad

    def __call__(self, *args):
        vg = self.value_and_grad
        outs = vg.fn(*args[: vg.n_in])
        return (*outs, *GradOnly(vg, len(outs))(*args))


@dataclass(frozen=True)
class TwoCallsBackward:
    """A :class:`Backward`'s input cotangents from the primals alone (its residuals unused,
    so XLA drops the forward pass that kept them): the two-call plan inlined into one trace."""

    value_and_grad: ValueAndGrad
    n_res: int

    def __call__(self, *args):
        vg = self.value_and_grad
        primals, cotangents = args[: vg.n_in], args[vg.n_in + self.n_res + 1 :]
        return vg(*primals, *cotangents)[-sum(vg.wrt_mask) :]


@dataclass(frozen=True)
class PlanSwitch:
    """``fused`` in a trace made under the default :data:`PLAN`, ``two_calls`` under
    ``"two calls"``."""

    fused: Callable
    two_calls: Callable

    def __call__(self, *args):
        return (self.two_calls if PLAN.get() == "two calls" else self.fused)(*args)
