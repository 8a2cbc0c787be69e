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
import functools
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_undefined
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.tensor.exceptions import ShapeError
from pytensor.tensor.type import TensorType

from pymc_jaxops._jit import jitted
from pymc_jaxops._plans import PLANS, GradientPlans, Race, specs_of
from pymc_jaxops._shapes import InputDim, OutputSignature, dim_to_pytensor, symbolic_shape
from pymc_jaxops._upstream.pytensor import JaxOpBase
from pymc_jaxops._vjp import ValueAndGrad
from pymc_jaxops.precision import mode_of

__all__ = ["JaxOp", "JaxValueAndGradOp", "for_this_machine"]

# What a timing on this machine chose (plan names per input shapes, ``_plans.py``): kept
# only when pickling for a process on this machine (see ``for_this_machine``).
_CHOSEN = "_chosen"
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


def for_this_machine_now() -> bool:
    """Whether the Ops pickled now go to a process on this machine (``for_this_machine``)."""
    return _FOR_THIS_MACHINE.get()


def _is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def _is_inexact(dtype: str) -> bool:
    return dtype.startswith(("float", "complex"))


class _Runtime:
    """What an Op builds to run in this process: dropped as a whole when the Op is pickled."""

    def __init__(self) -> None:
        self.jit: weakref.ref | None = None
        self.plans: dict[tuple, GradientPlans] = {}  # by input specs
        self.races: dict[tuple, Race] = {}
        self.settled: dict[tuple, Any] = {}  # what a decided race runs, by input specs
        self.value_and_grad: JaxValueAndGradOp | None = None  # a forward Op's fused twin
        self.placeholders: tuple[np.ndarray, ...] | None = None
        self.backward_from_specs: Callable | None = None


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
        # The runtime is process-local: rebuilt after unpickling.
        dropped = {"_runtime"} if for_this_machine_now() else {"_runtime", _CHOSEN}
        return {k: v for k, v in self.__dict__.items() if k not in dropped}

    @property
    def runtime(self) -> _Runtime:
        """What this Op built to run in this process (jitted plans, races)."""
        try:
            return self.__dict__["_runtime"]
        except KeyError:
            return self.__dict__.setdefault("_runtime", _Runtime())

    @property
    def chosen(self) -> dict[tuple, str]:
        """The plan timed fastest here, by input specs; travels to chain processes."""
        try:
            return self.__dict__[_CHOSEN]
        except KeyError:
            return self.__dict__.setdefault(_CHOSEN, {})

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
        runtime = self.runtime
        fn = runtime.jit() if runtime.jit is not None else None
        if fn is None:
            # Run in the x64 mode the function was traced in, whatever the global switch
            # says now (see precision.py); a float64 output is never computed in float32.
            fn = jitted(self.fn, self.x64_mode)
            runtime.jit = weakref.ref(fn)
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
            ValueAndGrad(base.fn, n_in, self.ct_mask, self.wrt_mask),
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
        run = self.plan_for(inputs)
        for storage, value in zip(output_storage, run(*inputs), strict=True):
            storage[0] = np.array(value)

    def plan_for(self, inputs: Sequence) -> Callable:
        """How this Op runs at these inputs' shapes: one fused call, forward + backward, or
        forward + gradient-only call, whichever was timed fastest (``_plans.py``)."""
        runtime = self.runtime
        specs = specs_of(inputs)
        run = runtime.settled.get(specs)
        if run is not None:
            return run
        if not any(self.wrt_mask):
            run = runtime.settled[specs] = self.jitted
            return run
        plans = runtime.plans.get(specs)
        if plans is None:
            primal_specs = specs[: self.n_primal_inputs]
            plans = GradientPlans(
                self.base.fn, self.ct_mask, self.wrt_mask, self.x64_mode, primal_specs
            )
            runtime.plans[specs] = plans
        race = runtime.races.get(specs)
        if race is None:
            race = runtime.races[specs] = Race(PLANS[0], PLANS, self.chosen.get(specs))

        def thunks(args: tuple) -> dict[str, Callable[[], object]]:
            return {name: functools.partial(plans.run(name), *args) for name in PLANS}

        name = race.plan(tuple(inputs), thunks)
        if race.winner is not None:
            self.chosen[specs] = race.winner
            runtime.settled[specs] = plans.run(race.winner)
        return plans.run(name)

    def narrowed(self, wrt_mask: tuple[bool, ...]) -> JaxValueAndGradOp:
        """The same Op differentiating only w.r.t. the inputs flagged in ``wrt_mask``."""
        return JaxValueAndGradOp(self.base, self.ct_mask, wrt_mask)
