"""PyTensor Ops that run a JAX function: the forward ``JaxOp`` and ``JaxValueAndGradOp``.

``JaxValueAndGradOp`` computes primal outputs *and* input cotangents in one JAX call. The
forward Op's ``pullback`` builds its gradient from one, and a graph rewrite (``rewrites.py``)
lets a compiled logp+dlogp graph take the primal outputs from it too, so the JAX function
runs once per evaluation. A value-and-grad Op is itself a ``JaxOp``, so its gradient (the
Hessian of the user's function) is built the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_undefined
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.tensor.exceptions import ShapeError
from pytensor.tensor.type import TensorType

from pymc_jaxops import _caches
from pymc_jaxops._shapes import InputDim, OutputSignature, dim_to_pytensor, symbolic_shape
from pymc_jaxops._upstream.pytensor import JaxOpBase
from pymc_jaxops.precision import mode_of, run_in

__all__ = ["JaxOp", "JaxValueAndGradOp", "for_this_machine"]

# The only strong references to jitted functions (and the XLA executables they hold), least
# recently used first. Ops hold theirs weakly: PyTensor's rewriters keep every Op they have
# seen, so an Op holding its executable would keep it for the life of the process.
_JIT_CACHE: OrderedDict[tuple[Callable, bool], Callable] = OrderedDict()
_JIT_CACHE_SIZE = 64


_JIT_CACHE_LOCK = threading.Lock()  # chains may run in threads (_thread_start.py)


def _clear_jit_cache() -> None:
    with _JIT_CACHE_LOCK:
        _JIT_CACHE.clear()


_caches.register("jitted JAX functions", _clear_jit_cache)


def _jitted(fn: Callable, mode: bool) -> Callable:
    """``jax.jit(fn)`` run in x64 ``mode``; one per function value, shared by equal Ops."""
    key = (fn, mode)
    with _JIT_CACHE_LOCK:
        jitted = _JIT_CACHE.get(key)
        if jitted is None:
            jitted = _JIT_CACHE.setdefault(key, run_in(mode, jax.jit(_owned(fn))))
            while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
                _JIT_CACHE.popitem(last=False)
        else:
            _JIT_CACHE.move_to_end(key)
    return jitted


def _forget_jitted(fn: Callable, mode: bool) -> None:
    """Drop the executable of ``fn`` now: no Op can call ``fn`` any more."""
    with _JIT_CACHE_LOCK:
        _JIT_CACHE.pop((fn, mode), None)


def _owned(fn: Callable) -> Callable:
    """A fresh function calling ``fn``, to hand to ``jax.jit``.

    JAX caches traces and executables under the function object it is given for as long as
    that object lives, and ``fn`` lives as long as PyTensor keeps the Op; a fresh object
    owned by ``_JIT_CACHE`` lets them go when the cache evicts it.
    """

    def call(*args):
        return fn(*args)

    call.__name__ = call.__qualname__ = str(getattr(fn, "__name__", "jax_fn"))
    return call


# Attributes rebuilt in each process: jitted callables, plans ready to run (``_residuals.py``).
_PROCESS_LOCAL = frozenset({"_jit", "_jit_specs", "_plans", "_vg", "_empty", "_grad"})
# What a timing on this machine chose (plan names per input shapes, ``_residuals.py``): kept
# only when pickling for a process on this machine (see ``for_this_machine``).
_MACHINE_LOCAL = frozenset({"_chosen"})
_FOR_THIS_MACHINE = contextvars.ContextVar("pymc_jaxops_for_this_machine", default=False)


@contextlib.contextmanager
def for_this_machine() -> Iterator[None]:
    """Ops pickled in this block keep what was timed here (a chain process on this machine).

    Elsewhere an unpickled Op times its plans again: another machine or device may prefer
    another plan.
    """
    token = _FOR_THIS_MACHINE.set(True)
    try:
        yield
    finally:
        _FOR_THIS_MACHINE.reset(token)


def _is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def _is_inexact(dtype: str) -> bool:
    return dtype.startswith(("float", "complex"))


@dataclass(frozen=True)
class _ValueAndGrad:
    """``(primals, cotangents) -> (*outputs, *input cotangents)`` in one JAX trace.

    Only outputs flagged in ``ct_mask`` receive a cotangent, and only inputs flagged in
    ``wrt_mask`` are differentiated: JAX never builds the VJP of what nobody asked for.
    """

    fn: Callable
    n_in: int
    ct_mask: tuple[bool, ...]
    wrt_mask: tuple[bool, ...]

    def __call__(self, *args):
        primals, cotangents = args[: self.n_in], args[self.n_in :]
        wrt = [i for i, w in enumerate(self.wrt_mask) if w]

        def restricted(*diff_args):
            full = list(primals)
            for i, value in zip(wrt, diff_args, strict=True):
                full[i] = value
            outs = self.fn(*full)
            connected = tuple(o for o, m in zip(outs, self.ct_mask, strict=True) if m)
            return connected, outs

        _, vjp, outs = jax.vjp(restricted, *[primals[i] for i in wrt], has_aux=True)
        # JAX wants each cotangent in its output's dtype, and a graph may hand over another
        # (PyTensor's JAX scan carries float64 into a float32 Hessian, say).
        connected = [o for o, m in zip(outs, self.ct_mask, strict=True) if m]
        cts = tuple(
            jax.numpy.asarray(c, o.dtype) for c, o in zip(cotangents, connected, strict=True)
        )
        grads = (
            jax.numpy.asarray(g, primals[i].dtype) for i, g in zip(wrt, vjp(cts), strict=True)
        )
        return (*outs, *grads)


class JaxOp(JaxOpBase):
    """Run a JAX function on PyTensor variables.

    Parameters
    ----------
    fn : callable
        Hashable JAX function of the flat array inputs, returning a flat tuple of arrays.
        Equal functions and equal input types make equal Ops.
    input_types : sequence of TensorType
    signature : OutputSignature
        Output types and symbolic output dims (see :func:`pymc_jaxops._shapes.infer_outputs`).
    name : str, optional
        Shown when the graph is printed.
    input_names : sequence of str, optional
        The user's names for the inputs, for error messages.
    """

    __props__: tuple[str, ...] = ("fn", "input_types")

    def __init__(
        self,
        fn: Callable,
        input_types: Sequence[TensorType],
        signature: OutputSignature,
        name: str | None = None,
        input_names: Sequence[str] | None = None,
    ):
        self.fn = fn
        self.input_types = tuple(input_types)
        self.signature = signature
        self.name = name or getattr(fn, "__name__", "jax_fn")
        self.input_names = tuple(input_names or (f"input {i}" for i in range(len(input_types))))

    def __str__(self) -> str:
        return f"{type(self).__name__}{{{self.name}}}"

    def __getstate__(self) -> dict[str, Any]:
        # The jitted callable and timed plans are process-local: rebuilt after unpickling.
        dropped = _PROCESS_LOCAL if _FOR_THIS_MACHINE.get() else _PROCESS_LOCAL | _MACHINE_LOCAL
        return {k: v for k, v in self.__dict__.items() if k not in dropped}

    @property
    def output_types(self) -> tuple[TensorType, ...]:
        return self.signature.types

    @property
    def x64_mode(self) -> bool:
        """The x64 mode this Op's function runs in (see precision.py)."""
        dtypes = [t.dtype for t in (*self.input_types, *self.output_types)]
        return mode_of(self.fn, dtypes)

    @property
    def jitted(self) -> Callable:
        ref = self.__dict__.get("_jit")
        fn = ref() if ref is not None else None
        if fn is None:
            # Run in the x64 mode the function was traced in, whatever the global switch
            # says now (see precision.py); a float64 output is never computed in float32.
            fn = _jitted(self.fn, self.x64_mode)
            self.__dict__["_jit"] = weakref.ref(fn)
        return fn

    def make_node(self, *inputs: Variable) -> Apply:
        if len(inputs) != len(self.input_types):
            raise TypeError(f"{self} takes {len(self.input_types)} inputs, got {len(inputs)}")
        inputs = tuple(
            t.filter_variable(pt.as_tensor_variable(x))
            for x, t in zip(inputs, self.input_types, strict=True)
        )
        return Apply(self, inputs, [t() for t in self.output_types])

    def perform(self, node, inputs, output_storage):
        for storage, value in zip(output_storage, self.jitted(*inputs), strict=True):
            # A writable copy: PyTensor may run in-place Ops on our outputs.
            storage[0] = np.array(value)

    def shape_of(self, node, input_shapes):
        sig = self.signature
        if any(d is None for dims in sig.dims for d in dims):
            raise ShapeError(f"{self}: output shape known only at run time")
        env = {name: input_shapes[dim.arg][dim.axis] for name, dim in sig.sources}
        return [
            tuple(
                pt.as_tensor_variable(d if isinstance(d, int) else dim_to_pytensor(d, env))
                for d in dims
            )
            for dims in sig.dims
        ]

    def connection_pattern(self, node):
        # Integer graph roots stay "connected" so that asking for their gradient reaches
        # pullback and gets an error naming the argument; computed integers (argmax(x), say)
        # are disconnected, which is exact for piecewise-constant functions.
        return [
            [
                (_is_inexact(i.dtype) and _is_inexact(o.dtype)) or _is_int_root(i)
                for o in node.outputs
            ]
            for i in node.inputs
        ]

    def pullback(self, inputs, outputs, output_grads):
        for k, (o, g) in enumerate(zip(outputs, output_grads, strict=True)):
            if o.dtype.startswith("complex") and not isinstance(g.type, DisconnectedType):
                raise NotImplementedError(
                    f"{self.name}: output {k} is complex ({o.dtype}); gradients through complex "
                    "outputs are not supported. Return real and imaginary parts (or abs/angle) "
                    "as separate float outputs."
                )
        ct_mask = tuple(
            _is_float(o.dtype) and not isinstance(g.type, DisconnectedType)
            for o, g in zip(outputs, output_grads, strict=True)
        )
        # Constants never need a gradient; the rewrite narrows the rest once it sees
        # which gradients the compiled graph really uses.
        wrt_mask = tuple(_is_float(i.dtype) and not isinstance(i, Constant) for i in inputs)
        if not (any(ct_mask) and any(wrt_mask)):
            return [self._zero_grad(k, i) for k, i in enumerate(inputs)]
        vg = JaxValueAndGradOp(self, ct_mask, wrt_mask)
        cotangents = [
            t.filter_variable(pt.cast(g, o.dtype))
            for o, g, t, m in zip(outputs, output_grads, self.output_types, ct_mask, strict=True)
            if m
        ]
        grads = iter(vg(*inputs, *cotangents, return_list=True)[len(outputs) :])
        return [
            next(grads) if w else self._zero_grad(k, i)
            for k, (i, w) in enumerate(zip(inputs, wrt_mask, strict=True))
        ]

    def _zero_grad(self, k: int, x) -> Variable:
        if _is_float(x.dtype):
            return pt.zeros_like(x)  # a constant input
        if _is_inexact(x.dtype):
            # PyTensor's gradient machinery admits float gradients only.
            return grad_undefined(
                self,
                k,
                x,
                f"{self.name}: argument `{self.input_names[k]}` is {x.dtype}; PyTensor does "
                "not take gradients w.r.t. complex variables. Pass the real and imaginary "
                "parts as float arguments and combine them inside the JAX function.",
            )
        if _is_int_root(x):
            return grad_undefined(
                self,
                k,
                x,
                f"{self.name}: argument `{self.input_names[k]}` is {x.dtype}, and JAX cannot "
                "differentiate integer or boolean inputs. Pass it as a float array if you "
                "need its gradient, or leave it out of `wrt`.",
            )
        return disconnected_type()


def _is_int_root(x) -> bool:
    return x.owner is None and not isinstance(x, Constant) and not _is_inexact(x.dtype)


class JaxValueAndGradOp(JaxOp):
    """Primal outputs and input cotangents of ``base`` in one JAX call.

    Inputs are ``base``'s inputs followed by one cotangent per output flagged in
    ``ct_mask``; outputs are ``base``'s outputs followed by one gradient per input flagged
    in ``wrt_mask``.
    """

    __props__ = ("base", "ct_mask", "wrt_mask")
    __str__ = JaxOp.__str__

    def __init__(self, base: JaxOp, ct_mask: tuple[bool, ...], wrt_mask: tuple[bool, ...]):
        self.base = base
        self.ct_mask = tuple(ct_mask)
        self.wrt_mask = tuple(wrt_mask)
        n_in = len(base.input_types)
        bsig = base.signature
        wrt = [i for i, w in enumerate(self.wrt_mask) if w]
        grad_dims = [symbolic_shape(i, base.input_types[i].shape) for i in wrt]
        sources = dict(bsig.sources)
        for i in wrt:
            for d, s in enumerate(base.input_types[i].shape):
                if s is None:
                    sources[InputDim(i, d).symbol] = InputDim(i, d)
        signature = OutputSignature(
            types=(*bsig.types, *(base.input_types[i] for i in wrt)),
            dims=(*bsig.dims, *grad_dims),
            sources=tuple(sorted(sources.items())),
            treedef=None,
        )
        input_types = (
            *base.input_types,
            *(t for t, m in zip(bsig.types, ct_mask, strict=True) if m),
        )
        super().__init__(
            _ValueAndGrad(base.fn, n_in, self.ct_mask, self.wrt_mask),
            input_types,
            signature,
            name=f"value_and_grad({base.name})",
            input_names=(
                *base.input_names,
                *(f"cotangent of output {k}" for k, m in enumerate(ct_mask) if m),
            ),
        )

    @property
    def n_primal_inputs(self) -> int:
        return len(self.base.input_types)

    @property
    def n_primal_outputs(self) -> int:
        return len(self.base.output_types)

    def perform(self, node, inputs, output_storage):
        # One fused call, or forward + backward where that was measured faster.
        from pymc_jaxops._residuals import value_and_grad_plan  # it imports this module

        run = value_and_grad_plan(self, inputs)
        for storage, value in zip(output_storage, run(*inputs), strict=True):
            storage[0] = np.array(value)

    def narrowed(self, wrt_mask: tuple[bool, ...]) -> JaxValueAndGradOp:
        """The same Op differentiating only w.r.t. the inputs flagged in ``wrt_mask``."""
        return JaxValueAndGradOp(self.base, self.ct_mask, wrt_mask)
