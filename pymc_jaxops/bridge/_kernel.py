"""User kernels as Numba sees them: compile for the call's types, check what they return.

Everything here runs while JAX traces, so every way Numba can refuse a kernel, and every
mismatch between what a kernel returns and what its outputs were declared as, is raised as
a :class:`KernelTypeError` that names the function before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import types

from pymc_jaxops._upstream.numba import as_dtype, can_compile
from pymc_jaxops.errors import KernelTypeError

_SCALAR_TYPES = {
    np.dtype(np.float32): types.float32,
    np.dtype(np.float64): types.float64,
    np.dtype(np.int32): types.int32,
    np.dtype(np.int64): types.int64,
}


@dataclass(frozen=True)
class Kernel:
    """A user function called on all of a call's inputs, and what it must return."""

    fn: Callable[..., Any]  # a numba CPUDispatcher on the FFI path, any callable otherwise
    n_out: int
    label: str  # what error messages call it, e.g. "mixture_logpdf" or "grad of f"
    returns_tuple: bool  # the function returns a tuple (of ``n_out`` values)
    # The outputs were declared by the user (``out=``), so a result of another dtype is an
    # error; derivative outputs instead take the dtype of their argument, as in JAX.
    exact_dtypes: bool


def _argument_type(dtype: np.dtype, rank: int) -> types.Type:
    scalar = _SCALAR_TYPES[dtype]
    return scalar if rank == 0 else types.Array(scalar, rank, "C")


def _describe(t: types.Type) -> str:
    if isinstance(t, types.Array):
        return f"a {t.ndim}-d {t.dtype} array"
    return f"a {t} scalar" if isinstance(t, types.Number | types.Boolean) else str(t)


def _result_dtype(t: types.Type) -> np.dtype | None:
    try:
        return np.dtype(as_dtype(t.dtype if isinstance(t, types.Array) else t))
    except NotImplementedError:
        return None


def check_result(kernel: Kernel, result: types.Type, out_sig: Sequence[tuple]) -> None:
    """Compare Numba's inferred return type with the declared outputs, at trace time."""
    is_tuple = isinstance(result, types.BaseTuple)
    if is_tuple and not kernel.returns_tuple:
        raise KernelTypeError(
            f"{kernel.label} returns a tuple of {len(result)} values, but one output is "
            f"declared; declare a tuple of {len(result)} outputs."
        )
    if not kernel.returns_tuple:
        results = [result]
    elif is_tuple and len(result) == kernel.n_out:
        results = list(result.types)
    else:
        raise KernelTypeError(
            f"{kernel.label} returns {_describe(result)}, but a tuple of {kernel.n_out} "
            f"outputs is declared; return a tuple of {kernel.n_out} arrays."
        )
    for j, (r, (dtype, rank)) in enumerate(zip(results, out_sig, strict=True)):
        if rank == 0:
            ok = isinstance(r, types.Number | types.Boolean) or (
                isinstance(r, types.Array) and r.ndim == 0
            )
        else:
            ok = isinstance(r, types.Array) and r.ndim == rank
        if not ok:
            want = "a scalar" if rank == 0 else f"a {rank}-d array"
            raise KernelTypeError(
                f"{kernel.label} returns {_describe(r)} for output {j}, but the declared "
                f"output {j} has rank {rank} (dtype {dtype}), which needs {want}; fix the "
                "function or the declared output shape."
            )
        got = _result_dtype(r)
        if kernel.exact_dtypes and got != dtype:
            raise KernelTypeError(
                f"{kernel.label} returns {got} for output {j}, but output {j} is declared "
                f"{dtype}; the bridge does not cast results (that would silently change "
                f"them). Declare `jax.ShapeDtypeStruct(shape, jnp.{got})` in `out`, or cast "
                f"inside the function (`.astype(np.{dtype})`)."
            )


def _accepts(declared: tuple, wanted: tuple) -> bool:
    # A fixed-signature dispatcher (``@njit("f8(f8[:])")``) declares layout "A" arrays;
    # Numba converts our C-contiguous views to them at the call.
    if len(declared) != len(wanted):
        return False
    for d, w in zip(declared, wanted, strict=True):
        if d == w:
            continue
        if not (
            isinstance(d, types.Array)
            and isinstance(w, types.Array)
            and (d.dtype, d.ndim) == (w.dtype, w.ndim)
            and d.layout == "A"
        ):
            return False
    return True


def compile_kernel(kernel: Kernel, in_sig: Sequence[tuple], names: Sequence[str]) -> types.Type:
    """Compile ``kernel`` for the argument signature; return Numba's inferred result type.

    Every way Numba can refuse the kernel becomes a :class:`KernelTypeError` naming the
    function and its arguments, raised while JAX traces.
    """
    fn = kernel.fn
    argtys = tuple(_argument_type(dt, r) for dt, r in in_sig)
    shown = ", ".join(f"{n}: {_describe(t)}" for n, t in zip(names, argtys, strict=True))
    if not can_compile(fn):
        matches = [
            cres
            for declared, cres in fn.overloads.items()  # type: ignore[attr-defined]
            if _accepts(declared, argtys)
        ]
        if matches:
            cres = matches[0]
        else:
            have = "; ".join(
                "(" + ", ".join(str(t) for t in sig) + ")"
                for sig in fn.signatures  # type: ignore[attr-defined]
            )  # type: ignore[attr-defined]
            raise KernelTypeError(
                f"{kernel.label} was compiled for fixed signatures ({have}) and none accepts "
                f"({shown}). Cast the arguments to a declared type, or add a signature."
            )
    else:
        try:
            fn.compile(argtys)  # type: ignore[attr-defined]
        except Exception as exc:
            # Typing errors, but also unsupported bytecode (an ``import`` inside the
            # function), lowering errors...: Numba's own messages do not say which function.
            first = str(exc).strip().splitlines()
            raise KernelTypeError(
                f"Numba cannot compile {kernel.label} for ({shown}): "
                f"{type(exc).__name__}:\n"
                + "\n".join(first[:12])
                + "\nMake the function compile in nopython mode for these argument types "
                "(or cast the arguments, e.g. `x.astype(jnp.float64)`), or pass "
                '`backend="callback"` to run it as plain Python.'
            ) from None
        cres = fn.overloads[argtys]  # type: ignore[attr-defined]
    if cres.objectmode:
        raise KernelTypeError(
            f"{kernel.label} compiled in Numba object mode, which an XLA FFI handler cannot "
            'call; make it nopython (`numba.njit`) or pass `backend="callback"`.'
        )
    return cres.signature.return_type
