"""Route a call to user kernels: one XLA FFI custom call, or one ``pure_callback`` each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from numba.core.registry import CPUDispatcher

from pymc_jaxops.bridge._callback import callback_call
from pymc_jaxops.bridge._handler import (
    Kernel,
    KernelTypeError,
    check_result,
    compile_kernel,
    ffi_target,
)


def can_ffi(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a Numba function an FFI handler can call (nopython mode)."""
    return isinstance(fn, CPUDispatcher) and not fn.targetoptions.get("forceobj", False)


def call_kernels(
    kernels: Sequence[tuple[Callable[..., Any], int, str]],
    args: Sequence[jax.Array],
    names: Sequence[str],
    out_specs: Sequence[jax.ShapeDtypeStruct],
    tuple_outs: Sequence[bool],
    ffi: bool,
    fn_label: str,
) -> tuple[jax.Array, ...]:
    """Run kernels ``(fn, n_out, label)`` on ``args``; their outputs, concatenated."""
    if not ffi:
        outs: list[jax.Array] = []
        for (fn, n_out, label), tup in zip(kernels, tuple_outs, strict=True):
            specs = out_specs[len(outs) : len(outs) + n_out]
            outs += callback_call(fn, label, args, specs, tup)
        return tuple(outs)
    in_sig = [(np.dtype(a.dtype), a.ndim) for a in args]
    out_sig = [(np.dtype(s.dtype), len(s.shape)) for s in out_specs]
    ks = [Kernel(fn, n_out, label) for fn, n_out, label in kernels]
    j = 0
    for k in ks:
        try:
            check_result(k, compile_kernel(k, in_sig, names), out_sig[j : j + k.n_out])
        except KernelTypeError as exc:
            raise KernelTypeError(f"numba_to_jax({fn_label}): {exc}") from None
        j += k.n_out
    target = ffi_target(ks, in_sig, out_sig, fn_label)
    call = jax.ffi.ffi_call(target, tuple(out_specs), vmap_method="expand_dims")
    return tuple(call(*args))
