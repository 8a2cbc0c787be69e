"""The ``jax.pure_callback`` path: any Python callable, at about 35 µs per call.

Used where no FFI handler can be built: plain Python / NumPy functions, Numba functions in
object mode, PyTensor ``perform`` methods.  Arguments and results follow the FFI path's
conventions (rank-0 arrays are passed as NumPy scalars; a function with several outputs
returns a tuple) so the two paths are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def _as_argument(a: np.ndarray) -> object:
    a = np.asarray(a)
    return a[()] if a.ndim == 0 else a


def callback_call(
    fn: Callable[..., object],
    label: str,
    args: Sequence[jax.Array],
    out_specs: Sequence[jax.ShapeDtypeStruct],
    tuple_result: bool,
    unwrap_scalars: bool = True,
) -> tuple[jax.Array, ...]:
    """Call ``fn`` on the host through ``jax.pure_callback``; one result per ``out_specs``.

    Batching is ``vmap_method="sequential"``: the function is called once per batch
    element, so it only ever sees the shapes it was written for. ``unwrap_scalars=False``
    passes rank-0 arguments as 0-d arrays, as PyTensor's ``perform`` expects.
    """
    out_specs = tuple(out_specs)

    def host(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        result: Any = fn(*(_as_argument(a) if unwrap_scalars else np.asarray(a) for a in arrays))
        results = tuple(result) if tuple_result else (result,)
        if len(results) != len(out_specs):
            raise ValueError(
                f"{label} returned {len(results)} outputs but {len(out_specs)} are declared."
            )
        converted = []
        for j, (r, spec) in enumerate(zip(results, out_specs, strict=True)):
            arr = np.asarray(r, dtype=spec.dtype)
            if arr.shape != tuple(spec.shape):
                raise ValueError(
                    f"{label} returned shape {arr.shape} for output {j}, but the declared "
                    f"output has shape {tuple(spec.shape)}; fix the declared shape or the "
                    "function."
                )
            converted.append(arr)
        return tuple(converted)

    return tuple(jax.pure_callback(host, out_specs, *args, vmap_method="sequential"))
