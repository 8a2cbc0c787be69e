"""``@as_pytensor_op``: call a JAX function on PyTensor variables.

The call binds the arguments to the function's signature, flattens them as a pytree, and
splits the leaves into array leaves (PyTensor variables, NumPy arrays, Python floats) that
become Op inputs, and static leaves (strings, flags, ints, callables, ...) that become part
of the Op's identity. The Op's outputs are rebuilt into the pytree the function returns.
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast, overload

import jax
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.traversal import graph_inputs
from pytensor.tensor.type import TensorType
from pytensor.tensor.variable import TensorVariable

from pymc_jaxops import _caches
from pymc_jaxops._jit import traced_once
from pymc_jaxops._ops import JaxOp
from pymc_jaxops._shapes import explain_trace_error, infer_outputs, mentions_symbolic_dim
from pymc_jaxops._upstream.pytensor import forget_ops_seen_by_rewriters, rewriters_keep_no
from pymc_jaxops.precision import scoped, trace_mode

__all__ = ["PytensorJaxFunction", "as_pytensor_op", "clear_caches"]

_ARRAY_LEAVES = (Variable, np.ndarray, np.generic, jax.Array, float, complex)
_OUTPUT_LEAVES = (jax.Array, np.ndarray, np.generic, bool, int, float, complex)


@dataclass(frozen=True)
class _FlatCall:
    """The user's function as a function of its array leaves alone (hashable, picklable)."""

    wrapped: PytensorJaxFunction
    treedef: Any  # PyTreeDef of (args, kwargs)
    static: tuple  # ((type, value) | None, ...) per leaf; None marks an array leaf
    x64: bool = True  # the JAX x64 mode it is traced and run in (precision.py)

    @property
    def __name__(self) -> str:
        return str(self.wrapped.__name__)

    def tree(self, *arrays):
        """Call the user's function; return its output pytree."""
        it = iter(arrays)
        leaves = [next(it) if s is None else s[1] for s in self.static]
        args, kwargs = jax.tree.unflatten(self.treedef, leaves)
        out = self.wrapped.__wrapped__(*args, **kwargs)
        for path, leaf in jax.tree_util.tree_flatten_with_path(out)[0]:
            if not isinstance(leaf, _OUTPUT_LEAVES):
                raise TypeError(
                    f"output{jax.tree_util.keystr(path)} is a {type(leaf).__name__}, not an "
                    "array; return only arrays (a pytree of arrays is fine)."
                )
        return out

    def __call__(self, *arrays):
        # Nested in jax.jit (inlined by XLA): traced once per input types, for the output
        # types when the graph is built, then reused by every trace that calls it.
        return tuple(jax.tree.leaves(traced_once(self.as_tree())(*arrays)))

    def as_tree(self) -> Callable:
        """:meth:`tree` as one function object for the life of this one.

        JAX keeps a trace while its function lives, and finds it by equality; a bound
        method is a new object at each access, dead before the next trace looks.
        """
        found = self.__dict__.get("_tree")
        if found is None:
            found = self.__dict__.setdefault("_tree", _Tree(self))
        return found

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_tree"}


@dataclass(frozen=True)
class _Tree:
    """``flat.tree`` as a function equal to every other for the same ``flat`` (a bound
    method is a new object each time, and JAX keeps traces by the function's equality)."""

    flat: _FlatCall

    @property
    def __name__(self) -> str:
        return self.flat.__name__

    def __call__(self, *arrays):
        return self.flat.tree(*arrays)


_HINTS = {
    "TracerArrayConversionError": "the function calls NumPy on a traced array: use jax.numpy.",
    "ConcretizationTypeError": (
        "Python control flow or int()/float() on an array value cannot be traced: use "
        "jnp.where / jax.lax.cond / jax.lax.while_loop, or pass the value as a static "
        "(non-array) argument."
    ),
    "TracerBoolConversionError": (
        "`if`/`while` on an array value cannot be traced: use jnp.where or jax.lax.cond."
    ),
    "TracerIntegerConversionError": (
        "an array value is used as a Python int: pass it as a static (Python int) argument."
    ),
    "NonConcreteBooleanIndexError": (
        "an output shape depends on input values (boolean masking): keep shapes fixed, "
        "e.g. jnp.where(mask, x, 0) or jnp.nonzero(..., size=n)."
    ),
}


class PytensorJaxFunction:
    """A JAX function that, called on PyTensor variables, returns PyTensor variables.

    Made by :func:`as_pytensor_op`; equal when they wrap the same function.
    """

    def __init__(self, fn: Callable, name: str | None = None, allow_eval: bool = True):
        if not callable(fn):
            raise TypeError(f"as_pytensor_op expects a callable, got {type(fn).__name__}.")
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._name = name
        self._allow_eval = bool(allow_eval)
        self.__name__ = name or getattr(fn, "__name__", type(fn).__name__)
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        # Owned by this object, so a function wrapped in a loop takes its Ops with it when
        # it goes; bounded, so one function called with many static values stays small.
        self._ops: OrderedDict[tuple, JaxOp] = OrderedDict()
        _WRAPPERS[id(self)] = self

    def __repr__(self) -> str:
        return f"<as_pytensor_op {self.__name__}>"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.__wrapped__ == self.__wrapped__
            and other._name == self._name
            and other._allow_eval == self._allow_eval
        )

    def __hash__(self) -> int:
        return hash((self.__wrapped__, self._name, self._allow_eval))

    def cache_clear(self) -> None:
        """Forget the Ops built so far (they are rebuilt, equal, on the next call)."""
        self._ops.clear()

    def __reduce__(self):
        # Pickle by reference when importable, so plain pickle works; by value otherwise
        # (cloudpickle then serialises the user's function itself).
        module, qualname = getattr(self, "__module__", None), getattr(self, "__qualname__", "")
        if module not in (None, "__main__") and _lookup(module, qualname) is self:
            return _lookup, (module, qualname)
        return PytensorJaxFunction, (self.__wrapped__, self._name, self._allow_eval)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._signature is not None:
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(
                    f"{self.__name__}{self._signature}: {err}. Call it with the arguments "
                    "of the JAX function it wraps."
                ) from None
            args, kwargs = bound.args, bound.kwargs
        paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(
            (args, kwargs), is_leaf=lambda x: isinstance(x, Variable)
        )
        inputs: list[TensorVariable] = []
        static: list[tuple[type, Any] | None] = []
        for path, leaf in paths_leaves:
            if isinstance(leaf, _ARRAY_LEAVES) and not isinstance(leaf, bool):
                inputs.append(self._as_input(leaf, path))
                static.append(None)
            else:
                try:
                    hash(leaf)
                except TypeError:
                    raise TypeError(
                        f"{self.__name__}: argument `{self._describe(path)}` is a "
                        f"{type(leaf).__name__}, which is neither an array nor hashable. "
                        "Non-array arguments are static: they are part of the Op's identity "
                        "and must be hashable (use a tuple instead of a list, a frozen "
                        "dataclass instead of a dict), or pass it as an array."
                    ) from None
                static.append((type(leaf), leaf))
        mode = trace_mode(i.type.dtype for i in inputs)
        flat = _FlatCall(self, treedef, tuple(static), mode)
        op = self._op(
            flat, inputs, [p for (p, _), s in zip(paths_leaves, static, strict=True) if s is None]
        )
        outputs = cast(list, op(*inputs, return_list=True))
        return jax.tree.unflatten(op.signature.treedef, outputs)

    def _describe(self, path) -> str:
        """The argument a leaf path into ``(args, kwargs)`` is: ``x``, ``params['mu']``."""
        where, key, *rest = path
        if where.idx == 0:
            names = [
                p.name
                for p in (self._signature.parameters.values() if self._signature else ())
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            name = names[key.idx] if key.idx < len(names) else f"args[{key.idx}]"
        else:
            name = str(key.key)
        return f"{name}{jax.tree_util.keystr(tuple(rest))}"

    def _as_input(self, leaf, path) -> TensorVariable:
        if isinstance(leaf, Variable):
            try:
                var = pt.as_tensor_variable(leaf)
            except TypeError:
                raise TypeError(
                    f"{self.__name__}: argument `{self._describe(path)}` is a PyTensor "
                    f"{type(leaf.type).__name__} variable, not a tensor; pass tensors only."
                ) from None
        else:
            var = pt.constant(np.asarray(leaf))
        if not isinstance(var.type, TensorType):
            raise TypeError(
                f"{self.__name__}: argument `{self._describe(path)}` has type {var.type}; "
                "only dense tensors can be passed to a JAX function."
            )
        return var

    def _op(self, flat: _FlatCall, inputs, paths) -> JaxOp:
        input_types = tuple(i.type for i in inputs)
        key = (flat, input_types)
        op = self._ops.get(key)
        if op is not None:
            self._ops.move_to_end(key)
            return op
        concrete = (lambda: _concrete_shapes(inputs)) if self._allow_eval else None
        try:
            with scoped(flat.x64):
                signature = infer_outputs(flat.as_tree(), input_types, concrete)
        except Exception as err:
            raise self._trace_error(err, paths, input_types, flat) from err
        names = [self._describe(p) for p in paths]
        op = JaxOp(flat, input_types, signature, name=self.__name__, input_names=names)
        self._ops[key] = op
        while len(self._ops) > _OPS_PER_FUNCTION:
            self._ops.popitem(last=False)
        return op

    def _trace_error(self, err: Exception, paths, input_types, flat: _FlatCall) -> Exception:
        names = [self._describe(p) for p in paths]
        message = explain_trace_error(str(err), names)
        hint = _HINTS.get(type(err).__name__, "")
        if not hint and _symbolic_dim_failure(err, flat, input_types):
            unknown = ", ".join(
                f"{n}.shape[{d}]"
                for n, t in zip(names, input_types, strict=True)
                for d, s in enumerate(t.shape)
                if s is None
            )
            hint = (
                f"PyTensor does not know {unknown} when the graph is built, so JAX traced "
                "symbolic sizes there, and the function (or a library it calls) needs "
                "concrete ones: give the input a static shape with pt.specify_shape(x, shape)."
            )
        legend = ", ".join(f"`{n}`: {t}" for n, t in zip(names, input_types, strict=True))
        kind = type(err) if type(err) in (TypeError, ValueError) else TypeError
        return kind(
            f"as_pytensor_op could not trace {self.__name__!r} with JAX.\n"
            f"  {type(err).__name__}: {message}\n"
            + (f"  What to do: {hint}\n" if hint else "")
            + f"  Array inputs: {legend or 'none'}"
        )


_OPS_PER_FUNCTION = 64
# By identity: equal wrappers of one function each own a cache.
_WRAPPERS: weakref.WeakValueDictionary[int, PytensorJaxFunction] = weakref.WeakValueDictionary()


def _clear_op_caches() -> None:
    for wrapper in list(_WRAPPERS.values()):
        wrapper.cache_clear()


_caches.register("Ops per wrapped function", _clear_op_caches)


def _our_op_types() -> tuple[type, ...]:
    from pymc_jaxops._absorb import XlaGraphOp  # absorb imports this package's Ops

    return (JaxOp, XlaGraphOp)


# PyTensor's rewriters keep every Op they saw (an unbounded cache keyed by instance): a
# wrapped closure, and the data it holds, would live as long as the process. Ours are kept
# out of it; clear_caches() empties it for the others (a Scan holding our Op, say).
rewriters_keep_no(_our_op_types)
_caches.register("Ops kept by PyTensor's rewriters", forget_ops_seen_by_rewriters)


def clear_caches() -> None:
    """Forget everything pymc_jaxops keeps for reuse: Ops, jitted JAX functions, absorbed
    graphs' functions, chain-thread decisions.

    Every cache is bounded or releases its entries once nothing else holds them; call this
    to free memory at once (e.g. between models in a long-running process). Graphs built
    before keep working: their Ops rebuild what they need.

    Examples
    --------
    >>> from pymc_jaxops import clear_caches
    >>> clear_caches()
    """
    _caches.clear_all()


def _symbolic_dim_failure(err: Exception, flat: _FlatCall, input_types) -> bool:
    """Whether tracing failed because an unknown input dim was symbolic.

    Recognised by JAX's exception class or a symbolic dim in the message; failing that, by
    behaviour: the function traces when every unknown dim is given a concrete size.
    """
    if not any(s is None for t in input_types for s in t.shape):
        return False
    inconclusive = getattr(jax.errors, "InconclusiveDimensionOperation", ())
    chain: BaseException | None = err
    while chain is not None:
        if isinstance(chain, inconclusive) or mentions_symbolic_dim(str(chain)):
            return True
        chain = chain.__cause__ or chain.__context__
    structs = [
        jax.ShapeDtypeStruct(tuple(7 if s is None else s for s in t.shape), np.dtype(t.dtype))
        for t in input_types
    ]
    try:
        with scoped(flat.x64):
            jax.eval_shape(flat, *structs)
    except Exception:
        return False
    return True


def _concrete_shapes(inputs) -> list[tuple[int, ...]] | None:
    """Current shapes of inputs that depend only on constants and shared data (pm.Data)."""
    if any(
        not isinstance(v, Constant) and v.owner is None and not hasattr(v, "get_value")
        for v in graph_inputs([i.shape for i in inputs])
    ):
        return None
    fn = pytensor.function(
        [], [i.shape for i in inputs], mode=Mode(linker="py", optimizer="fast_compile")
    )
    return [tuple(int(d) for d in s) for s in fn()]


def _lookup(module: str, qualname: str):
    obj: Any = sys.modules.get(module) or __import__(module, fromlist=["_"])
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


@overload
def as_pytensor_op(
    jax_function: Callable[..., Any], *, name: str | None = None, allow_eval: bool = True
) -> PytensorJaxFunction: ...
@overload
def as_pytensor_op(
    jax_function: None = None, *, name: str | None = None, allow_eval: bool = True
) -> Callable[[Callable[..., Any]], PytensorJaxFunction]: ...
def as_pytensor_op(
    jax_function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    allow_eval: bool = True,
) -> PytensorJaxFunction | Callable[[Callable[..., Any]], PytensorJaxFunction]:
    """Make a JAX function callable on PyTensor variables, with gradients.

    Arguments may be PyTensor variables, NumPy arrays, Python floats, or pytrees (dicts,
    lists, tuples, NamedTuples) of them; every other leaf (str, bool, int, None, callables)
    is static: passed to the function as is, and part of the Op's identity. The function
    may return one array or any pytree of arrays; the call returns the same structure of
    PyTensor variables.

    Logp and gradient cost one JAX call in a compiled PyMC graph (a value-and-grad Op plus
    a graph rewrite), and the whole model compiles to JAX for NumPyro / BlackJAX / nutpie.
    Every real and complex dtype works as input and output; a gradient has its input's
    dtype, and JAX's x64 mode follows the types (see ``docs/errors.md``).

    It accepts :func:`pytensor.wrap_jax`'s arguments with the same meaning, so changing the
    import is enough; unlike it, unknown input dims are traced symbolically rather than
    refused, and a non-array output raises.

    Parameters
    ----------
    jax_function : callable
        A pure JAX function (jax.numpy, jax.lax, jax.vmap, jax.jit-ed or custom_vjp
        functions are all fine).
    name : str, optional
        Name shown in graphs and errors; defaults to ``jax_function.__name__``.
    allow_eval : bool, default True
        When JAX cannot trace an unknown input dim symbolically, compile and evaluate the
        input's shape graph for its current size (possible when it depends only on
        constants and ``pm.Data``). With ``False`` such a function raises, asking for
        ``pt.specify_shape``.

    Returns
    -------
    PytensorJaxFunction
        The wrapped function, called like the original on PyTensor variables. Called with
        keyword options only (``@as_pytensor_op(name=..., allow_eval=...)``), a decorator
        that returns one.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import pytensor.tensor as pt
    >>> from pymc_jaxops import as_pytensor_op
    >>> @as_pytensor_op
    ... def norm_logp(x, mu, sigma):
    ...     return jnp.sum(-0.5 * ((x - mu) / sigma) ** 2 - jnp.log(sigma))
    >>> mu = pt.scalar("mu")
    >>> out = norm_logp(jnp.array([0.1, -0.3]), mu, 1.0)
    >>> float(out.eval({mu: 0.0}))
    -0.05
    """
    if jax_function is None:
        return functools.partial(PytensorJaxFunction, name=name, allow_eval=allow_eval)
    return PytensorJaxFunction(jax_function, name, allow_eval)
