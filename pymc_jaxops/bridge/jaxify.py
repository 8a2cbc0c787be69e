"""Turn a Numba (or plain Python) array function into a JAX function: :func:`numba_to_jax`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from pymc_jaxops.bridge._route import call_kernels, can_ffi
from pymc_jaxops.bridge._xla_ffi import DTYPE_CODES

__all__ = ["numba_to_jax"]

OutSpec: TypeAlias = Any  # a ShapeDtypeStruct-like object, or a tuple/list of them
Backend: TypeAlias = Literal["auto", "ffi", "callback"]

_SUPPORTED = ", ".join(str(d) for d in DTYPE_CODES)


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _param_names(fn: Callable[..., Any], n: int) -> list[str]:
    try:
        params = list(inspect.signature(getattr(fn, "py_func", fn)).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(n)]


class _Spec:
    """Everything known at trace time about one call: argument and output specs."""

    def __init__(self, fn: Callable[..., Any], out: OutSpec, args: Sequence[Any]):
        self.label = _label(fn)
        self.names = _param_names(fn, len(args))
        self.args = [self._check_arg(i, a) for i, a in enumerate(args)]
        self.in_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in self.args]
        declared = out(*self.in_specs) if callable(out) else out
        self.tuple_out = isinstance(declared, tuple | list)
        outs = list(declared) if self.tuple_out else [declared]
        self.out_specs = [self._check_out(j, o) for j, o in enumerate(outs)]
        self.float_args = [
            i for i, a in enumerate(self.args) if jnp.issubdtype(a.dtype, jnp.floating)
        ]

    def error(self, what: str) -> str:
        return f"numba_to_jax({self.label}): {what}"

    def _check_arg(self, i: int, a: Any) -> jax.Array:
        name = self.names[i]
        try:
            arr = jnp.asarray(a)
        except TypeError:
            raise TypeError(
                self.error(
                    f"argument {i} ({name!r}) is a {type(a).__name__}, not an array; pass a "
                    "JAX or NumPy array."
                )
            ) from None
        if np.dtype(arr.dtype) not in DTYPE_CODES:
            raise TypeError(
                self.error(
                    f"argument {i} ({name!r}) has dtype {arr.dtype}; the bridge passes "
                    f"{_SUPPORTED} arrays. Cast it, for example `{name}.astype(jnp.float64)`."
                )
            )
        if hasattr(a, "dtype") and np.dtype(a.dtype) != np.dtype(arr.dtype):
            raise TypeError(
                self.error(
                    f"argument {i} ({name!r}) has dtype {a.dtype} but JAX holds it as "
                    f"{arr.dtype} because 64-bit mode is off; enable it with "
                    "`jax.config.update('jax_enable_x64', True)` or cast the argument."
                )
            )
        return arr

    def _check_out(self, j: int, o: Any) -> jax.ShapeDtypeStruct:
        if not (hasattr(o, "shape") and hasattr(o, "dtype")):
            raise TypeError(
                self.error(
                    f"declared output {j} is {o!r}; `out` must be a jax.ShapeDtypeStruct (or a "
                    "tuple of them), or a callable returning one from the arguments' "
                    "ShapeDtypeStructs, e.g. `lambda x: jax.ShapeDtypeStruct((), x.dtype)`."
                )
            )
        dtype = np.dtype(o.dtype)
        if dtype not in DTYPE_CODES:
            raise TypeError(
                self.error(f"declared output {j} has dtype {dtype}; use one of {_SUPPORTED}.")
            )
        if jax.dtypes.canonicalize_dtype(dtype) != dtype:
            raise TypeError(
                self.error(
                    f"declared output {j} is {dtype} but JAX's 64-bit mode is off; enable it "
                    "with `jax.config.update('jax_enable_x64', True)` or declare "
                    f"{jax.dtypes.canonicalize_dtype(dtype)}."
                )
            )
        return jax.ShapeDtypeStruct(tuple(int(d) for d in o.shape), dtype)


def _zero_cotangent(a: jax.Array) -> Any:
    return np.zeros(a.shape, dtype=jax.dtypes.float0)


def numba_to_jax(
    fn: Callable[..., Any],
    out: OutSpec | Callable[..., OutSpec],
    *,
    grad: Callable[..., Any] | None = None,
    vjp: Callable[..., Any] | None = None,
    backend: Backend = "auto",
) -> Callable[..., Any]:
    """Make a Numba function callable from JAX, as an XLA FFI custom call.

    The result works under ``jax.jit``, ``jax.vmap``, inside ``lax`` loops and, given
    ``grad`` or ``vjp``, under ``jax.grad`` (through ``jax.custom_vjp``). With the default
    backend a Numba ``@njit`` function runs as a typed XLA FFI target whose handler is itself
    compiled by Numba: no Python, no GIL and no copies per call.

    Parameters
    ----------
    fn
        Function of arrays. Rank-0 arguments arrive as scalars, others as C-contiguous
        arrays that must not be modified. Returns one array or scalar, or a tuple of them
        when ``out`` is a tuple. float32, float64, int32 and int64 are supported.
    out
        The output's shape and dtype: a ``jax.ShapeDtypeStruct`` (or tuple/list of them), or
        a callable taking the arguments' ``ShapeDtypeStruct`` and returning that, for
        functions whose output follows their inputs.
    grad
        Gradient of a function with one scalar output: takes the same arguments, returns
        the gradient with respect to each floating-point argument (a tuple if there are
        several). Value and gradient are then computed in one call.
    vjp
        Vector-Jacobian product for any outputs: ``vjp(*args, *cotangents)`` returns the
        cotangent of each floating-point argument (a tuple if there are several). Integer
        arguments are not differentiated.
    backend
        ``"ffi"``: XLA FFI (CPU only; ``fn`` must be a nopython Numba dispatcher).
        ``"callback"``: ``jax.pure_callback``, about 250x slower but takes any Python
        callable and runs on any JAX platform. ``"auto"`` (default): ``"ffi"`` for each of
        ``fn``/``grad``/``vjp`` that is a nopython Numba dispatcher, ``"callback"`` for the
        others (plain Python, NumPy, object-mode Numba).

    Returns
    -------
    callable
        ``f(*args)`` returning a ``jax.Array`` (or a tuple). Under ``vmap`` the FFI handler
        loops over the batch itself; callbacks run once per batch element.

    Raises
    ------
    TypeError
        While tracing, for unsupported dtypes, malformed ``out``, or when Numba cannot
        compile ``fn`` for the arguments' types or its result rank differs from ``out``.
    jax.errors.JaxRuntimeError
        When running, if ``fn`` raises or returns a result of the wrong size.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numba, numpy as np
    >>> jax.config.update("jax_enable_x64", True)
    >>> @numba.njit
    ... def logp(x):
    ...     return -0.5 * np.sum(x * x)
    >>> @numba.njit
    ... def dlogp(x):
    ...     return -x
    >>> f = numba_to_jax(logp, jax.ShapeDtypeStruct((), jnp.float64), grad=dlogp)
    >>> float(jax.jit(f)(jnp.array([1.0, 2.0])))
    -2.5
    >>> jax.grad(f)(jnp.array([1.0, 2.0]))
    Array([-1., -2.], dtype=float64)
    """
    if grad is not None and vjp is not None:
        raise TypeError(
            f"numba_to_jax({_label(fn)}): pass `grad` or `vjp`, not both; `grad` is the "
            "shortcut for a single scalar output."
        )
    if backend not in ("auto", "ffi", "callback"):
        raise ValueError(f"backend must be 'auto', 'ffi' or 'callback', not {backend!r}")

    def use_ffi(f: Callable[..., Any], role: str) -> bool:
        if backend == "callback":
            return False
        if can_ffi(f):
            return True
        if backend == "ffi":
            raise TypeError(
                f"numba_to_jax({_label(fn)}): backend='ffi' needs {role} to be a nopython "
                f"Numba function, got {_label(f)!r}; decorate it with `@numba.njit` or use "
                "backend='callback'."
            )
        return False

    fn_ffi = use_ffi(fn, "fn")
    deriv = grad if grad is not None else vjp
    deriv_ffi = use_ffi(deriv, "grad" if grad is not None else "vjp") if deriv else False
    label = _label(fn)

    def primal(*args: Any) -> Any:
        spec = _Spec(fn, out, args)
        outs = call_kernels(
            [(fn, len(spec.out_specs), label)],
            spec.args,
            spec.names,
            spec.out_specs,
            [spec.tuple_out],
            fn_ffi,
            label,
        )
        return outs if spec.tuple_out else outs[0]

    wrapped: Any = primal
    if deriv is not None:
        deriv_label = f"{'grad' if grad is not None else 'vjp'} of {label}"

        def cotangent_specs(spec: _Spec) -> list[jax.ShapeDtypeStruct]:
            if not spec.float_args:
                raise TypeError(spec.error("no floating-point argument to differentiate."))
            return [spec.in_specs[i] for i in spec.float_args]

        def expand(spec: _Spec, cts: Sequence[jax.Array]) -> tuple[Any, ...]:
            it = iter(cts)
            return tuple(
                next(it) if i in spec.float_args else _zero_cotangent(a)
                for i, a in enumerate(spec.args)
            )

        wrapped = jax.custom_vjp(primal)

        def fwd(*args: Any) -> tuple[Any, Any]:
            spec = _Spec(fn, out, args)
            if grad is None:
                return primal(*args), (spec.args, ())
            if spec.tuple_out or spec.out_specs[0].shape != ():
                raise TypeError(
                    spec.error(
                        "`grad` needs a single scalar output (out=ShapeDtypeStruct((), ...)); "
                        "for other outputs pass `vjp` instead."
                    )
                )
            cspecs = cotangent_specs(spec)
            tup = len(cspecs) > 1
            if fn_ffi and deriv_ffi:
                # Value and gradient in one FFI call: what NUTS needs at every leapfrog step.
                kernels = [(fn, 1, label), (grad, len(cspecs), deriv_label)]
                specs = spec.out_specs + cspecs
                res = call_kernels(
                    kernels, spec.args, spec.names, specs, [False, tup], True, label
                )
                return res[0], (spec.args, res[1:])
            grads = call_kernels(
                [(grad, len(cspecs), deriv_label)],
                spec.args,
                spec.names,
                cspecs,
                [tup],
                deriv_ffi,
                label,
            )
            return primal(*args), (spec.args, grads)

        def bwd(res: Any, ct: Any) -> tuple[Any, ...]:
            args, grads = res
            spec = _Spec(fn, out, args)
            if vjp is None:
                return expand(spec, [ct * g for g in grads])
            cts = list(ct) if spec.tuple_out else [ct]
            cts = [jnp.asarray(c, s.dtype) for c, s in zip(cts, spec.out_specs, strict=True)]
            cspecs = cotangent_specs(spec)
            names = [*spec.names, *(f"cotangent{j}" for j in range(len(cts)))]
            grads = call_kernels(
                [(vjp, len(cspecs), deriv_label)],
                [*spec.args, *cts],
                names,
                cspecs,
                [len(cspecs) > 1],
                deriv_ffi,
                label,
            )
            return expand(spec, grads)

        wrapped.defvjp(fwd, bwd)

    @functools.wraps(fn)
    def jax_fn(*args: Any) -> Any:
        _Spec(fn, out, args)  # validate before custom_vjp casts the arguments to JAX arrays
        return wrapped(*args)

    jax_fn.backend = "ffi" if fn_ffi else "callback"  # type: ignore[attr-defined]
    return jax_fn
