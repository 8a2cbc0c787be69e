"""The ``jax.pure_callback`` path: any Python callable, at about 35 µs per call.

Used where no FFI handler can be built: plain Python / NumPy functions, Numba functions in
object mode, PyTensor ``perform`` methods.  Arguments and results follow the FFI path's
conventions (rank-0 arrays are passed as NumPy scalars; a function with several outputs
returns a tuple) so the two paths are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from pymc_jaxops.bridge._kernel import Kernel


def _as_argument(a: np.ndarray) -> object:
    a = np.asarray(a)
    return a[()] if a.ndim == 0 else a


def _convert(kernel: Kernel, j: int, r: Any, spec: jax.ShapeDtypeStruct) -> np.ndarray:
    arr = np.asarray(r)
    dtype = np.dtype(spec.dtype)
    # A Python float or int carries no precision of its own; take the declared one.
    python_scalar = type(r) in (float, int) and arr.dtype.kind == dtype.kind
    if kernel.exact_dtypes and arr.dtype != dtype and not python_scalar:
        raise TypeError(
            f"{kernel.label} returned {arr.dtype} for output {j}, but output {j} is declared "
            f"{dtype}; the bridge does not cast results (that would silently change them). "
            "Declare the dtype the function returns in `out`, or cast inside the function."
        )
    arr = arr.astype(dtype, copy=False)
    if arr.shape != tuple(spec.shape):
        raise ValueError(
            f"{kernel.label} returned shape {arr.shape} for output {j}, but the declared "
            f"output has shape {tuple(spec.shape)}; fix the declared shape or the function."
        )
    return arr


def callback_call(
    kernel: Kernel,
    args: Sequence[jax.Array],
    out_specs: Sequence[jax.ShapeDtypeStruct],
    *,
    unwrap_scalars: bool = True,
) -> tuple[jax.Array, ...]:
    """Call ``kernel.fn`` on the host through ``jax.pure_callback``; one result per spec.

    Batching is ``vmap_method="sequential"``: the function is called once per batch
    element, so it only ever sees the shapes it was written for. ``unwrap_scalars=False``
    passes rank-0 arguments as 0-d arrays, as PyTensor's ``perform`` expects.
    """
    out_specs = tuple(out_specs)

    def host(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        unwrap = _as_argument if unwrap_scalars else np.asarray
        result: Any = kernel.fn(*(unwrap(a) for a in arrays))
        results = tuple(result) if kernel.returns_tuple else (result,)
        if len(results) != len(out_specs):
            raise ValueError(
                f"{kernel.label} returned {len(results)} outputs but {len(out_specs)} are "
                "declared."
            )
        return tuple(
            _convert(kernel, j, r, s)
            for j, (r, s) in enumerate(zip(results, out_specs, strict=True))
        )

    return tuple(jax.pure_callback(host, out_specs, *args, vmap_method="sequential"))
