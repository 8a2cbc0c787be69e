"""Route a call to user kernels: one XLA FFI custom call, or one ``pure_callback`` each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from pymc_jaxops._upstream.numba import is_nopython_function
from pymc_jaxops.bridge._callback import callback_call
from pymc_jaxops.bridge._handler import ffi_target
from pymc_jaxops.bridge._kernel import Kernel, KernelTypeError, check_result, compile_kernel


def can_ffi(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a Numba function an FFI handler can call (nopython mode)."""
    return is_nopython_function(fn)


def call_kernels(
    kernels: Sequence[Kernel],
    args: Sequence[jax.Array],
    names: Sequence[str],
    out_specs: Sequence[jax.ShapeDtypeStruct],
    *,
    use_ffi: bool,
    fn_label: str,
) -> tuple[jax.Array, ...]:
    """Run ``kernels`` on ``args``; their outputs, concatenated, one per ``out_specs``.

    With ``use_ffi`` all kernels run in one XLA FFI custom call (each must be a nopython
    Numba dispatcher); otherwise each is one ``pure_callback``. Errors name ``fn_label``,
    the function the user passed to ``numba_to_jax``.
    """
    if not use_ffi:
        outs: list[jax.Array] = []
        for k in kernels:
            outs += callback_call(k, args, out_specs[len(outs) : len(outs) + k.n_out])
        return tuple(outs)
    in_sig = [(np.dtype(a.dtype), a.ndim) for a in args]
    out_sig = [(np.dtype(s.dtype), len(s.shape)) for s in out_specs]
    j = 0
    for k in kernels:
        try:
            check_result(k, compile_kernel(k, in_sig, names), out_sig[j : j + k.n_out])
        except KernelTypeError as exc:
            raise KernelTypeError(f"numba_to_jax({fn_label}): {exc}") from None
        j += k.n_out
    target = ffi_target(kernels, in_sig, out_sig, fn_label)
    call = jax.ffi.ffi_call(target, tuple(out_specs), vmap_method="expand_dims")
    return tuple(call(*args))
