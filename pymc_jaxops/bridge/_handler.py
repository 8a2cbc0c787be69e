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
from dataclasses import dataclass

import jax
import numba
import numpy as np
from numba import types
from numba.core.errors import NumbaError
from numba.extending import overload

from pymc_jaxops.bridge import _xla_ffi as abi

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

_SCALAR_TYPES = {
    np.dtype(np.float32): types.float32,
    np.dtype(np.float64): types.float64,
    np.dtype(np.int32): types.int32,
    np.dtype(np.int64): types.int64,
}


@dataclass(frozen=True)
class Kernel:
    """A user function called by a handler on all of the handler's inputs."""

    fn: object  # a numba CPUDispatcher
    n_out: int
    label: str  # what error messages call it, e.g. "mixture_logpdf" or "grad of f"


class KernelTypeError(TypeError):
    """Numba rejected a kernel for the requested argument types (raised at trace time)."""


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


def _argument_type(dtype: np.dtype, rank: int) -> types.Type:
    scalar = _SCALAR_TYPES[dtype]
    return scalar if rank == 0 else types.Array(scalar, rank, "C")


def _describe(t: types.Type) -> str:
    if isinstance(t, types.Array):
        return f"a {t.ndim}-d {t.dtype} array"
    return f"a {t} scalar" if isinstance(t, types.Number | types.Boolean) else str(t)


def check_result(kernel: Kernel, result: types.Type, out_sig: Sequence[tuple]) -> None:
    """Compare Numba's inferred return type with the declared outputs, at trace time."""
    if kernel.n_out == 1 and isinstance(result, types.BaseTuple):
        raise KernelTypeError(
            f"{kernel.label} returns a tuple of {len(result)} values, but one output is "
            f"declared; declare a tuple of {len(result)} outputs."
        )
    if kernel.n_out == 1:
        results = [result]
    elif isinstance(result, types.BaseTuple) and len(result) == kernel.n_out:
        results = list(result.types)
    else:
        raise KernelTypeError(
            f"{kernel.label} returns {_describe(result)}, but {kernel.n_out} outputs are "
            f"declared; return a tuple of {kernel.n_out} arrays."
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
    if not fn._can_compile:  # type: ignore[attr-defined]
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
        except NumbaError as exc:
            first = str(exc).strip().splitlines()
            raise KernelTypeError(
                f"Numba cannot compile {kernel.label} for ({shown}):\n"
                + "\n".join(first[:12])
                + "\nMake the function accept these argument types, or cast the arguments "
                "(for example `x.astype(jnp.float64)`) before calling it."
            ) from None
        cres = fn.overloads[argtys]  # type: ignore[attr-defined]
    if cres.objectmode:
        raise KernelTypeError(
            f"{kernel.label} compiled in Numba object mode, which an XLA FFI handler cannot "
            'call; make it nopython (`numba.njit`) or pass `backend="callback"`.'
        )
    return cres.signature.return_type


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
            value = f"r{k}" if kernel.n_out == 1 else f"r{k}[{m}]"
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
    Kernels must already be compiled with :func:`compile_kernel` (that is where user errors
    are reported).
    """
    key = (tuple((k.fn, k.n_out) for k in kernels), tuple(in_sig), tuple(out_sig))
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
