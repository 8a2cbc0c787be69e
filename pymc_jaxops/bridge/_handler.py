"""Numba-compiled XLA FFI handlers: one typed custom-call target per kernel signature.

A handler is a ``@cfunc`` taking ``XLA_FFI_CallFrame*``.  It answers XLA's registration-time
metadata query, checks every buffer's dtype and rank against the signature it was compiled
for, calls the user's Numba kernels on zero-copy views of the buffers, copies their results
into the output buffers and returns ``NULL``; anything wrong is returned as an
``XLA_FFI_Error`` so that JAX raises it as a Python exception instead of crashing.

Batching is done here rather than by XLA: the target is called with
``vmap_method="expand_dims"``, so under ``vmap`` every buffer gains the same number of
leading batch dimensions (size 1 for unbatched inputs) and the handler loops over them,
broadcasting the size-1 ones without copying.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import jax
import numba
import numpy as np
from numba import types
from numba.extending import overload

from pymc_jaxops.bridge import _xla_ffi as abi
from pymc_jaxops.bridge._kernel import Kernel

# Compiled handlers must outlive every executable that calls them: XLA keeps raw function
# pointers, so the cfunc objects (and the message strings they point at) live here forever.
_TARGETS: dict[tuple, str] = {}
_KEEPALIVE: list[object] = []
_LOCK = threading.Lock()
_COUNTER = itertools.count()
_FRAME_HELPERS = (
    "answer_metadata",
    "api_of",
    "batch_size",
    "check",
    "core_size",
    "data",
    "dim",
    "input_offset",
)


def _store(ptr, n, value):  # pragma: no cover - replaced by the Numba overload below
    raise NotImplementedError


@overload(_store)
def _store_overload(ptr, n, value):
    if isinstance(value, types.Array):

        def impl(ptr, n, value):
            if value.size != n:
                return False
            flat = value.ravel()
            for i in range(n):
                ptr[i] = flat[i]
            return True

        return impl
    if isinstance(value, types.Number | types.Boolean):

        def impl(ptr, n, value):
            if n != 1:
                return False
            ptr[0] = value
            return True

        return impl
    return None


def _message(text: str) -> int:
    buf = np.frombuffer(text.encode() + b"\0", dtype=np.uint8).copy()
    _KEEPALIVE.append(buf)
    return buf.ctypes.data


def _handler_source(
    kernels: Sequence[Kernel], in_sig: Sequence[tuple], out_sig: Sequence[tuple]
) -> tuple[str, dict[str, str], list[str]]:
    """Python source of the cfunc for this signature, its messages and its check messages.

    Only the kernel-specific lines are generated; the frame handling lives in ``_xla_ffi``.
    """
    n_in, n = len(in_sig), len(in_sig) + len(out_sig)
    sig = [("input", i, dt, r) for i, (dt, r) in enumerate(in_sig)]
    sig += [("output", j, dt, r) for j, (dt, r) in enumerate(out_sig)]
    checks = [f"expected {n_in} inputs and {n - n_in} outputs"]
    checks += [f"{w} {k} is not {dt}, which the handler was compiled for" for w, k, dt, _ in sig]
    checks += [f"{w} {k} does not have rank {r} plus the batch dims" for w, k, _, r in sig]
    checks += ["an input's batch dimensions do not broadcast against the output's"]
    msgs: dict[str, str] = {}
    lines = [
        "def handler(frame):",
        "    f = addr_of(frame)",
        "    if answer_metadata(f):",
        "        return null()",
        "    api = api_of(f)",
        f"    nb = check(f, CODES, RANKS, {n_in})",
        "    if nb < 0:",
        "        return create_error(api, CHECK_MSGS[-nb - 1], ERROR_INVALID_ARGUMENT)",
        f"    for b in range(batch_size(f, {n_in}, nb)):",
    ]
    for i, (dtype, rank) in enumerate(in_sig):
        offset = f"input_offset(f, {i}, {n_in}, nb, b, {rank}) * {dtype.itemsize}"
        ptr = f"PTR_{i}(data(f, {i}, {n_in}) + {offset})"
        if rank == 0:
            lines.append(f"        x{i} = {ptr}[0]")
        else:
            shape = ", ".join(f"dim(f, {i}, {n_in}, nb + {c})" for c in range(rank))
            lines.append(f"        x{i} = carray({ptr}, ({shape},))")
    args = ", ".join(f"x{i}" for i in range(n_in))
    j0 = 0
    for k, kernel in enumerate(kernels):
        msgs[f"raise_{k}"] = (
            f"{kernel.label} raised an exception; Numba cannot pass its message through XLA. "
            f"Call {kernel.label} directly on the same inputs to see it."
        )
        lines += [
            "        try:",
            f"            r{k} = K{k}({args})",
            "        except Exception:",
            f"            return create_error(api, MSG_raise_{k}, ERROR_FAILED_PRECONDITION)",
        ]
        for m in range(kernel.n_out):
            j = j0 + m
            i = n_in + j
            dtype, rank = out_sig[j]
            value = f"r{k}[{m}]" if kernel.returns_tuple else f"r{k}"
            msgs[f"size_{j}"] = (
                f"{kernel.label} returned a result for output {j} whose number of elements "
                "differs from the declared output shape; fix the declared shape or the function"
            )
            lines += [
                f"        size = core_size(f, {i}, {n_in}, nb, {rank})",
                f"        ptr = PTR_{i}(data(f, {i}, {n_in}) + b * size * {dtype.itemsize})",
                f"        if not store(ptr, size, {value}):",
                f"            return create_error(api, MSG_size_{j}, ERROR_FAILED_PRECONDITION)",
            ]
        j0 += kernel.n_out
    lines.append("    return null()")
    return "\n".join(lines) + "\n", msgs, checks


def ffi_target(
    kernels: Sequence[Kernel],
    in_sig: Sequence[tuple],
    out_sig: Sequence[tuple],
    fn_label: str,
) -> str:
    """Name of a registered FFI target running ``kernels``; compiled on first use.

    ``in_sig``/``out_sig`` are ``(numpy dtype, rank)`` pairs for the unbatched buffers.
    Kernels must already be compiled with :func:`~pymc_jaxops.bridge._kernel.compile_kernel`
    (that is where user errors are reported).
    """
    key = (tuple((k.fn, k.n_out, k.returns_tuple) for k in kernels), tuple(in_sig), tuple(out_sig))
    with _LOCK:
        if key in _TARGETS:
            return _TARGETS[key]
        src, msgs, checks = _handler_source(kernels, in_sig, out_sig)
        sig = [*in_sig, *out_sig]
        namespace: dict[str, object] = {
            **{name: getattr(abi, name) for name in _FRAME_HELPERS},
            "addr_of": abi.addr_of,
            "null": abi.null,
            "create_error": abi.create_error,
            "ERROR_INVALID_ARGUMENT": abi.ERROR_INVALID_ARGUMENT,
            "ERROR_FAILED_PRECONDITION": abi.ERROR_FAILED_PRECONDITION,
            "carray": numba.carray,
            "store": _store,
            "CODES": np.array([abi.DTYPE_CODES[dt] for dt, _ in sig], dtype=np.int64),
            "RANKS": np.array([r for _, r in sig], dtype=np.int64),
            "CHECK_MSGS": np.array(
                [_message(f"numba_to_jax({fn_label}): {m}") for m in checks], dtype=np.int64
            ),
        }
        for k, kernel in enumerate(kernels):
            namespace[f"K{k}"] = kernel.fn
        for i, (dtype, _) in enumerate(sig):
            namespace[f"PTR_{i}"] = abi.POINTER_OF[dtype]
        for key_, text in msgs.items():
            namespace[f"MSG_{key_}"] = _message(f"numba_to_jax({fn_label}): {text}")
        exec(compile(src, f"<numba_to_jax handler for {fn_label}>", "exec"), namespace)
        cfunc = numba.cfunc(types.voidptr(types.voidptr), nopython=True)(namespace["handler"])
        name = f"pymc_jaxops_numba_{next(_COUNTER)}"
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(cfunc.ctypes), platform="cpu")
        _KEEPALIVE.append(cfunc)
        _TARGETS[key] = name
        return name
