"""A JAX implementation for PyTensor Ops that have none: :func:`register_jax_fallback`.

PyTensor's ``jax_funcify`` is a ``functools.singledispatch``; registering on the base ``Op``
(and on ``FromFunctionOp``, which ``as_op``/``wrap_py`` build) only reaches Ops whose class
has no more specific registration, i.e. exactly the ones that used to raise
"No JAX conversion for the given `Op`". Of those, it takes only Ops with tensor inputs and
outputs; every other Op, and every Op while the fallback is switched off
(:func:`unregister_jax_fallback`), gets PyTensor's own behaviour.

Their forward pass runs the Op's own ``perform``
through ``jax.pure_callback`` (or, for a ``wrap_py`` of a Numba function, through the XLA FFI
bridge), and their gradient is the Op's own ``L_op`` graph, itself converted to JAX, so
black-box Ops with a gradient sample under NumPyro.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pymc_jaxops._upstream import Touch, declare
from pymc_jaxops._upstream.pytensor import infer_shape, pullback, wrapped_function
from pymc_jaxops.bridge._callback import callback_call
from pymc_jaxops.bridge._kernel import Kernel, KernelTypeError
from pymc_jaxops.bridge._route import call_kernels, can_ffi

__all__ = ["register_jax_fallback", "unregister_jax_fallback"]

_ENABLED = False
# What ``jax_funcify`` did for each class before the fallback was registered on it.
_PREVIOUS: dict[type, Callable[..., Any]] = {}


def _shape_value(dim: Any) -> int | None:
    if isinstance(dim, int | np.integer):
        return int(dim)
    from pytensor.graph.basic import Constant

    if isinstance(dim, Constant):
        return int(dim.data)
    try:
        return int(dim.eval())
    except Exception:
        return None


def _probe_shapes(host: Callable[..., Any], node: Any, args: Sequence[jax.Array]) -> list[Any]:
    # Last resort: run ``perform`` once on ones of the traced shapes.  Ones rather than
    # zeros because black boxes more often take logs than divide by one.
    dummies = [
        np.ones(a.shape, dtype=i.type.dtype) for a, i in zip(args, node.inputs, strict=True)
    ]
    try:
        with np.errstate(all="ignore"):
            return [np.shape(r) for r in host(*dummies)]
    except Exception:
        return [tuple(o.type.shape) for o in node.outputs]


def _out_specs(
    op: Any, node: Any, args: Sequence[jax.Array], host: Callable[..., Any]
) -> list[jax.ShapeDtypeStruct]:
    """Output shapes for the traced argument shapes.

    From the output types' static shapes, else the Op's ``infer_shape``, else one probing
    call of ``perform`` (whose result shapes the callback checks again at every call).
    """
    shapes: list[tuple[int | None, ...]] = [tuple(o.type.shape) for o in node.outputs]
    if any(d is None for s in shapes for d in s) and hasattr(op, "infer_shape"):
        try:
            inferred = infer_shape(op, node, [tuple(a.shape) for a in args])
        except Exception:
            inferred = None
        if inferred is not None:
            shapes = [
                tuple(_shape_value(d) if s is None else s for d, s in zip(new, old, strict=True))
                for new, old in zip(inferred, shapes, strict=True)
            ]
    if any(d is None for s in shapes for d in s):
        probed = _probe_shapes(host, node, args)
        shapes = [
            tuple(p if s is None else s for p, s in zip(new, old, strict=True))
            if len(new) == len(old)
            else old
            for new, old in zip(probed, shapes, strict=True)
        ]
    specs = []
    for j, (o, shape) in enumerate(zip(node.outputs, shapes, strict=True)):
        if any(d is None for d in shape):
            raise NotImplementedError(
                f"JAX needs the shape of output {j} of {op} before running it, and neither its "
                f"type ({o.type}), the Op's infer_shape, nor a probing call of perform on ones "
                f"gives it for input shapes {[tuple(a.shape) for a in args]}. Give the output a "
                "static shape (e.g. `pt.TensorType('float64', shape=(3,))` in `otypes`) or "
                "implement `infer_shape`."
            )
        specs.append(jax.ShapeDtypeStruct(shape, np.dtype(o.type.dtype)))
    return specs


def _perform_host(op: Any, node: Any) -> Callable[..., tuple[np.ndarray, ...]]:
    def host(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        inputs = [
            np.asarray(a, dtype=i.type.dtype) for a, i in zip(arrays, node.inputs, strict=True)
        ]
        storage: list[list[Any]] = [[None] for _ in node.outputs]
        op.perform(node, inputs, storage)
        return tuple(s[0] for s in storage)

    return host


def _gradient_fn(op: Any, node: Any) -> Callable[..., list[Any]]:
    """JAX function ``(inputs, outputs, output_grads) -> input_grads`` from the Op's ``L_op``.

    Outputs enter as placeholders, so the backward pass reuses the forward values instead of
    recomputing them.
    """
    from pytensor.compile.mode import get_mode
    from pytensor.gradient import DisconnectedType, NullType
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.utils import MethodNotDefined
    from pytensor.link.jax.dispatch import jax_funcify

    inputs = [i.type() for i in node.inputs]
    outputs = [o.type() for o in node.outputs]
    ograds = [o.type() for o in node.outputs]
    try:
        grads = pullback(op, inputs, outputs, ograds)
    except (NotImplementedError, MethodNotDefined) as exc:
        raise NotImplementedError(
            f"JAX cannot differentiate {op}: the Op defines no gradient ({exc}). "
            "Implement its `pullback` (PyTensor 3) or `L_op`/`grad` (PyTensor 2) to sample "
            "it with a gradient-based JAX sampler."
        ) from None
    keep: list[int] = []
    for i, g in enumerate(grads):
        if isinstance(g.type, NullType):
            raise NotImplementedError(
                f"The gradient of {op} with respect to input {i} is undefined: {g.type.why_null}"
            )
        if not isinstance(g.type, DisconnectedType):
            keep.append(i)
    fgraph = FunctionGraph([*inputs, *outputs, *ograds], [grads[i] for i in keep], clone=True)
    get_mode("JAX").optimizer.rewrite(fgraph)
    jax_grads = jax_funcify(fgraph, fgraph_name=f"grad_of_{type(op).__name__}")

    def gradient(*values: Any) -> list[Any]:
        computed = iter(jax_grads(*values))
        return [next(computed) if i in keep else None for i in range(len(inputs))]

    return gradient


def _jax_funcify_fallback(op: Any, node: Any = None, **kwargs: Any) -> Callable[..., Any]:
    """``jax_funcify`` for Ops without a JAX implementation: ``perform`` + ``L_op``."""
    from pytensor.tensor.type import TensorType

    applies = node is not None and all(
        isinstance(v.type, TensorType) for v in [*node.inputs, *node.outputs]
    )
    if not (_ENABLED and applies):
        previous = next(f for cls, f in _PREVIOUS.items() if isinstance(op, cls))
        try:
            return previous(op, node=node, **kwargs)
        except NotImplementedError as exc:
            if not applies:
                raise
            raise NotImplementedError(
                f"{exc}. pymc_jaxops can run this Op's `perform` inside JAX through a "
                "Python callback (slow, but it works with NumPyro, BlackJAX and nutpie's JAX "
                "backend): call `pymc_jaxops.register_jax_fallback()` first."
            ) from None

    label = str(op)
    n_out = len(node.outputs)
    fn = wrapped_function(op)
    # A ``wrap_py`` of a Numba function runs through the FFI bridge, unless a rank-0 input
    # would reach it as a scalar where ``perform`` passes a 0-d array.
    use_ffi = can_ffi(fn) and all(i.type.ndim > 0 for i in node.inputs)
    host = _perform_host(op, node)
    perform = Kernel(host, n_out, label, returns_tuple=True, exact_dtypes=False)

    def forward(*args: Any) -> tuple[jax.Array, ...]:
        args = tuple(
            jnp.asarray(a, dtype=i.type.dtype) for a, i in zip(args, node.inputs, strict=True)
        )
        specs = _out_specs(op, node, args, host)
        if use_ffi:
            names = [f"input{i}" for i in range(len(args))]
            # PyTensor casts ``perform`` results to the output type, so the bridge may too.
            kernel = Kernel(fn, n_out, label, returns_tuple=n_out > 1, exact_dtypes=False)
            try:
                return call_kernels([kernel], args, names, specs, use_ffi=True, fn_label=label)
            except KernelTypeError:
                pass  # ``perform`` may still manage, e.g. through NumPy's casting rules
        return callback_call(perform, args, specs, unwrap_scalars=False)

    gradient: list[Callable[..., list[Any]]] = []  # built on first use, then cached

    @jax.custom_vjp
    def apply(*args: Any) -> tuple[jax.Array, ...]:
        return forward(*args)

    def fwd(*args: Any) -> tuple[tuple[jax.Array, ...], Any]:
        outs = forward(*args)
        return outs, (args, outs)

    def bwd(res: Any, cts: tuple[Any, ...]) -> tuple[Any, ...]:
        args, outs = res
        if not gradient:
            gradient.append(_gradient_fn(op, node))
        cts = tuple(jnp.asarray(c, dtype=o.dtype) for c, o in zip(cts, outs, strict=True))
        grads = gradient[0](*args, *outs, *cts)
        result: list[Any] = []
        for g, a in zip(grads, args, strict=True):
            a = jnp.asarray(a)
            if not jnp.issubdtype(a.dtype, jnp.inexact):
                result.append(np.zeros(a.shape, dtype=jax.dtypes.float0))
            elif g is None:
                result.append(jnp.zeros_like(a))
            else:
                result.append(jnp.broadcast_to(jnp.asarray(g, dtype=a.dtype), a.shape))
        return tuple(result)

    apply.defvjp(fwd, bwd)

    def fallback(*args: Any) -> Any:
        outs = apply(*args)
        return outs if n_out > 1 else outs[0]

    fallback.__name__ = f"jax_fallback_{type(op).__name__}"
    return fallback


def register_jax_fallback() -> None:
    """Run PyTensor Ops that have no JAX implementation inside JAX; idempotent.

    After this, ``pytensor.function(..., mode="JAX")`` and
    ``pm.sample(nuts_sampler="numpyro")`` accept graphs holding black-box Ops
    (``pytensor.wrap_py``/``as_op`` results, user Ops with their own ``perform``): the
    forward pass calls ``perform`` through ``jax.pure_callback`` (a ``wrap_py`` of a
    ``numba.njit`` function uses the XLA FFI bridge instead), and gradients come from the
    Op's own ``grad``/``L_op`` graph converted to JAX. Ops that have a JAX implementation,
    and Ops with non-tensor inputs or outputs, are untouched. ``import pymc_jaxops`` calls this;
    :func:`unregister_jax_fallback` switches it off again. Importing PyTensor's JAX
    dispatch, as this does, turns on JAX's 64-bit mode when ``floatX`` is float64.

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> from pytensor.compile.ops import wrap_py
    >>> register_jax_fallback()
    >>> @wrap_py(itypes=[pt.dvector], otypes=[pt.dvector])
    ... def double(x):
    ...     return 2 * x
    >>> x = pt.dvector("x")
    >>> f = pytensor.function([x], double(x), mode="JAX")
    >>> f(np.array([1.0, 2.0]))
    Array([2., 4.], dtype=float64)
    """
    global _ENABLED
    from pytensor.compile.ops import FromFunctionOp
    from pytensor.graph.op import Op
    from pytensor.link.jax.dispatch import jax_funcify

    for cls in (FromFunctionOp, Op):  # most specific first: the lookup takes the first match
        if cls not in _PREVIOUS:
            _PREVIOUS[cls] = jax_funcify.dispatch(cls)
            jax_funcify.register(cls)(_jax_funcify_fallback)
    _ENABLED = True


def unregister_jax_fallback() -> None:
    """Give Ops without a JAX implementation PyTensor's own behaviour back.

    Compiling such an Op to JAX then raises PyTensor's ``NotImplementedError`` ("No JAX
    conversion for the given `Op`"), with a note saying that
    :func:`register_jax_fallback` would run it. Useful to make sure a model runs natively
    in JAX, with no Python callback hidden in it.

    Examples
    --------
    >>> import pytensor, pytensor.tensor as pt
    >>> from pytensor.compile.ops import wrap_py
    >>> @wrap_py(itypes=[pt.dvector], otypes=[pt.dvector])
    ... def double(x):
    ...     return 2 * x
    >>> x = pt.dvector("x")
    >>> unregister_jax_fallback()
    >>> try:
    ...     pytensor.function([x], double(x), mode="JAX")
    ... except NotImplementedError as exc:
    ...     print("register_jax_fallback()" in str(exc))
    True
    >>> register_jax_fallback()  # as `import pymc_jaxops` left it
    """
    global _ENABLED
    _ENABLED = False


def _switch_on() -> Callable[[], None]:
    register_jax_fallback()
    return unregister_jax_fallback


# On by default, so black-box Ops sample with NumPyro out of the box; scoped to Ops with no
# JAX implementation of their own.
declare(Touch("pytensor jax dispatch fallback for Ops without one", "pytensor", _switch_on))
