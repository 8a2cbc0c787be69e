"""What one call of a bridged function passes and expects, checked while JAX traces."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pymc_jaxops import precision
from pymc_jaxops.bridge._xla_ffi import DTYPE_CODES

SUPPORTED = ", ".join(str(d) for d in DTYPE_CODES)


def label_of(fn: Callable[..., Any]) -> str:
    """The name error messages call ``fn`` by."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def _param_names(fn: Callable[..., Any], n: int) -> list[str]:
    try:
        params = list(inspect.signature(getattr(fn, "py_func", fn)).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(n)]


def check_out_spec(label: str, j: int, o: Any) -> jax.ShapeDtypeStruct:
    """One declared output as a ``ShapeDtypeStruct``, or a ``TypeError`` naming ``label``."""
    if not (hasattr(o, "shape") and hasattr(o, "dtype")):
        raise TypeError(
            f"numba_to_jax({label}): declared output {j} is {o!r}; `out` must be a "
            "jax.ShapeDtypeStruct (or a tuple of them), or a callable returning one from the "
            "arguments' ShapeDtypeStructs, e.g. `lambda x: jax.ShapeDtypeStruct((), x.dtype)`."
        )
    shape = tuple(o.shape)
    if not all(isinstance(d, int | np.integer) and d >= 0 for d in shape):
        raise TypeError(
            f"numba_to_jax({label}): declared output {j} has shape {shape}; every dimension "
            "must be a non-negative integer known before the function runs."
        )
    dtype = np.dtype(o.dtype)
    if dtype not in DTYPE_CODES:
        raise TypeError(
            f"numba_to_jax({label}): declared output {j} has dtype {dtype}; use one of "
            f"{SUPPORTED}."
        )
    return jax.ShapeDtypeStruct(tuple(int(d) for d in shape), dtype)


def declared_outputs(label: str, declared: Any) -> tuple[bool, list[jax.ShapeDtypeStruct]]:
    """``(is_tuple, specs)`` for the value of ``out`` (after calling it, if callable)."""
    is_tuple = isinstance(declared, tuple | list)
    outs = list(declared) if is_tuple else [declared]
    return is_tuple, [check_out_spec(label, j, o) for j, o in enumerate(outs)]


class CallSpec:
    """Everything known at trace time about one call: argument and output specs."""

    def __init__(self, fn: Callable[..., Any], out: Any, args: Sequence[Any]):
        self.label = label_of(fn)
        self.names = _param_names(fn, len(args))
        what = f"numba_to_jax({self.label})"
        precision.require_x64([a.dtype for a in args if hasattr(a, "dtype")], what)
        self.args = [self._check_arg(i, a) for i, a in enumerate(args)]
        self.in_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in self.args]
        declared = out(*self.in_specs) if callable(out) else out
        self.tuple_out, self.out_specs = declared_outputs(self.label, declared)
        precision.require_x64([s.dtype for s in self.out_specs], what)
        for j, s in enumerate(self.out_specs):
            self._check_precision(j, s.dtype)
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
                    f"{SUPPORTED} arrays. Cast it, for example `{name}.astype(jnp.float64)`."
                )
            )
        # A safety net behind require_x64: JAX would hand the function truncated numbers.
        if hasattr(a, "dtype") and np.dtype(a.dtype) != np.dtype(arr.dtype):
            raise TypeError(
                self.error(
                    f"argument {i} ({name!r}) has dtype {a.dtype} but JAX holds it as "
                    f"{arr.dtype} because 64-bit mode is off; enable it with "
                    "`jax.config.update('jax_enable_x64', True)` or cast the argument."
                )
            )
        return arr

    def _check_precision(self, j: int, dtype: np.dtype) -> None:
        if jax.dtypes.canonicalize_dtype(dtype) != dtype:
            raise TypeError(
                self.error(
                    f"declared output {j} is {dtype} but JAX's 64-bit mode is off; enable it "
                    "with `jax.config.update('jax_enable_x64', True)` or declare "
                    f"{jax.dtypes.canonicalize_dtype(dtype)}."
                )
            )
