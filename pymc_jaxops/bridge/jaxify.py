"""Turn a Numba (or plain Python) array function into a JAX function: :func:`numba_to_jax`.

The returned object is a small picklable class rather than a closure: what it pickles is the
user's functions and ``out``, from which the JAX rules and FFI handlers are rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from pymc_jaxops.bridge._kernel import Kernel
from pymc_jaxops.bridge._route import call_kernels, can_ffi
from pymc_jaxops.bridge._spec import CallSpec, declared_outputs, label_of

__all__ = ["numba_to_jax"]

_OutSpec: TypeAlias = Any  # a ShapeDtypeStruct-like object, or a tuple/list of them
_Backend: TypeAlias = Literal["auto", "ffi", "callback"]


def numba_to_jax(
    fn: Callable[..., Any],
    out: _OutSpec | Callable[..., _OutSpec],
    *,
    grad: Callable[..., Any] | None = None,
    vjp: Callable[..., Any] | None = None,
    backend: _Backend = "auto",
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
        when ``out`` is a tuple. float32, float64, int32 and int64 are supported. Results
        must have the declared dtype: they are never cast.
    out
        The output's shape and dtype: a ``jax.ShapeDtypeStruct`` (or tuple/list of them), or
        a callable taking the arguments' ``ShapeDtypeStruct`` and returning that, for
        functions whose output follows their inputs.
    grad
        Gradient of a function with one scalar output: takes the same arguments, returns
        the gradient with respect to each floating-point argument (a tuple if there are
        several). Value and gradient are then computed in one call. Each gradient is
        returned in its argument's dtype.
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
        loops over the batch itself; callbacks run once per batch element. Its ``backend``
        attribute says which backend runs ``fn``. It pickles (with ``pickle`` when ``fn``,
        ``out``, ``grad`` and ``vjp`` are importable, with ``cloudpickle`` always) and is
        rebuilt, handlers included, where it is unpickled.

    Raises
    ------
    TypeError
        At once, when ``fn``, ``grad`` or ``vjp`` is not callable or a fixed ``out`` is
        malformed. While tracing, for unsupported dtypes, a malformed ``out``, when Numba
        cannot compile ``fn`` (a :class:`~pymc_jaxops.bridge.KernelTypeError`), when its
        result's rank or dtype differs from ``out``, or when ``jax.grad`` meets a function
        declared without ``grad``/``vjp``.
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
    if not callable(fn):
        raise TypeError(
            f"numba_to_jax: `fn` must be a function of arrays (a `numba.njit` function or any "
            f"Python callable), got {type(fn).__name__} {fn!r}."
        )
    label = label_of(fn)
    for role, f in (("grad", grad), ("vjp", vjp)):
        if f is not None and not callable(f):
            raise TypeError(
                f"numba_to_jax({label}): `{role}` must be a function of the same arrays, got "
                f"{type(f).__name__} {f!r}."
            )
    if grad is not None and vjp is not None:
        raise TypeError(
            f"numba_to_jax({label}): pass `grad` or `vjp`, not both; `grad` is the "
            "shortcut for a single scalar output."
        )
    if backend not in ("auto", "ffi", "callback"):
        raise ValueError(
            f"numba_to_jax({label}): `backend` must be 'auto', 'ffi' or 'callback', not "
            f"{backend!r}."
        )
    if not callable(out):
        declared_outputs(label, out)  # a fixed `out` is checked now, not at the first call
    return _BridgedFunction(fn, out, grad, vjp, backend)


def _use_ffi(f: Callable[..., Any], role: str, backend: _Backend, label: str) -> bool:
    if backend == "callback":
        return False
    if can_ffi(f):
        return True
    if backend == "ffi":
        raise TypeError(
            f"numba_to_jax({label}): backend='ffi' needs {role} to be a nopython Numba "
            f"function, got {label_of(f)!r}; decorate it with `@numba.njit` or use "
            "backend='callback'."
        )
    return False


def _zero_cotangent(a: jax.Array) -> Any:
    return np.zeros(a.shape, dtype=jax.dtypes.float0)


def _rebuild(fn: Any, out: Any, grad: Any, vjp: Any, backend: _Backend) -> Callable[..., Any]:
    return numba_to_jax(fn, out, grad=grad, vjp=vjp, backend=backend)


class _BridgedFunction:
    """What :func:`numba_to_jax` returns: ``fn`` as a JAX function, with its JAX rules.

    Differentiation goes through ``jax.custom_vjp`` when ``grad``/``vjp`` is given, else
    through a ``jax.custom_jvp`` whose rule refuses with a message naming ``fn``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        out: Any,
        grad: Callable[..., Any] | None,
        vjp: Callable[..., Any] | None,
        backend: _Backend,
    ):
        self._fn, self._out, self._grad, self._vjp = fn, out, grad, vjp
        self._backend_choice = backend
        self._label = label_of(fn)
        self._fn_ffi = _use_ffi(fn, "fn", backend, self._label)
        deriv = grad if grad is not None else vjp
        role = "grad" if grad is not None else "vjp"
        self._deriv = deriv
        self._deriv_ffi = deriv is not None and _use_ffi(deriv, role, backend, self._label)
        self._deriv_label = f"{role} of {self._label}"
        self.backend = "ffi" if self._fn_ffi else "callback"
        # Look like the wrapped function to `help`, tracebacks and jaxprs.
        self.__name__ = self._label
        self.__qualname__ = getattr(fn, "__qualname__", self._label)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self._jax_fn = self._differentiable()

    def __repr__(self) -> str:
        return f"<numba_to_jax({self._label}), backend={self.backend!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._fn, self._out, self._grad, self._vjp, self._backend_choice)

    def __call__(self, *args: Any) -> Any:
        self._spec(args)  # validate before the custom rule casts the arguments to arrays
        return self._jax_fn(*args)

    def _spec(self, args: Sequence[Any]) -> CallSpec:
        return CallSpec(self._fn, self._out, args)

    def _differentiable(self) -> Any:
        if self._deriv is None:
            f = jax.custom_jvp(self._primal)
            f.defjvp(self._refuse_derivative)
            return f
        g = jax.custom_vjp(self._primal)
        g.defvjp(self._fwd, self._bwd)
        return g

    def _fn_kernel(self, spec: CallSpec) -> Kernel:
        n = len(spec.out_specs)
        return Kernel(self._fn, n, self._label, returns_tuple=spec.tuple_out, exact_dtypes=True)

    def _deriv_kernel(self, n: int) -> Kernel:
        assert self._deriv is not None
        return Kernel(self._deriv, n, self._deriv_label, returns_tuple=n > 1, exact_dtypes=False)

    def _call(
        self,
        kernels: Sequence[Kernel],
        args: Sequence[Any],
        names: Sequence[str],
        specs: Sequence[jax.ShapeDtypeStruct],
        use_ffi: bool,
    ) -> tuple[jax.Array, ...]:
        return call_kernels(kernels, args, names, specs, use_ffi=use_ffi, fn_label=self._label)

    def _primal(self, *args: Any) -> Any:
        spec = self._spec(args)
        kernel = self._fn_kernel(spec)
        outs = self._call([kernel], spec.args, spec.names, spec.out_specs, self._fn_ffi)
        return outs if spec.tuple_out else outs[0]

    def _refuse_derivative(self, primals: Any, tangents: Any) -> Any:
        raise TypeError(
            f"numba_to_jax({self._label}): JAX cannot differentiate {self._label}, which was "
            "bridged without a derivative; pass `grad=` (gradient of a scalar output) or "
            "`vjp=` (vector-Jacobian product) to numba_to_jax. Only reverse mode "
            "(jax.grad, jax.vjp) is supported."
        )

    def _cotangent_specs(self, spec: CallSpec) -> list[jax.ShapeDtypeStruct]:
        if not spec.float_args:
            raise TypeError(spec.error("no floating-point argument to differentiate."))
        return [spec.in_specs[i] for i in spec.float_args]

    def _fwd(self, *args: Any) -> tuple[Any, Any]:
        spec = self._spec(args)
        if self._grad is None:
            return self._primal(*args), (spec.args, ())
        if spec.tuple_out or spec.out_specs[0].shape != ():
            raise TypeError(
                spec.error(
                    "`grad` needs a single scalar output (out=ShapeDtypeStruct((), ...)); "
                    "for other outputs pass `vjp` instead."
                )
            )
        cspecs = self._cotangent_specs(spec)
        grad_kernel = self._deriv_kernel(len(cspecs))
        if self._fn_ffi and self._deriv_ffi:
            # Value and gradient in one FFI call: what NUTS needs at every leapfrog step.
            kernels = [self._fn_kernel(spec), grad_kernel]
            res = self._call(kernels, spec.args, spec.names, spec.out_specs + cspecs, True)
            return res[0], (spec.args, res[1:])
        grads = self._call([grad_kernel], spec.args, spec.names, cspecs, self._deriv_ffi)
        return self._primal(*args), (spec.args, grads)

    def _bwd(self, res: Any, ct: Any) -> tuple[Any, ...]:
        args, grads = res
        spec = self._spec(args)
        if self._vjp is None:
            return self._expand(spec, [ct * g for g in grads])
        cts = list(ct) if spec.tuple_out else [ct]
        cts = [jnp.asarray(c, s.dtype) for c, s in zip(cts, spec.out_specs, strict=True)]
        cspecs = self._cotangent_specs(spec)
        names = [*spec.names, *(f"cotangent{j}" for j in range(len(cts)))]
        kernel = self._deriv_kernel(len(cspecs))
        grads = self._call([kernel], [*spec.args, *cts], names, cspecs, self._deriv_ffi)
        return self._expand(spec, grads)

    @staticmethod
    def _expand(spec: CallSpec, cts: Sequence[jax.Array]) -> tuple[Any, ...]:
        # One cotangent per argument, in the argument's dtype (a float64 output times a
        # float32 gradient would otherwise hand a float32 argument a float64 cotangent).
        it = iter(cts)
        return tuple(
            jnp.asarray(next(it), a.dtype) if i in spec.float_args else _zero_cotangent(a)
            for i, a in enumerate(spec.args)
        )
