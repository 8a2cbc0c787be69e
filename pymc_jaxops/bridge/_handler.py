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


def _message(text: str) -> tuple[int, np.ndarray]:
    buf = np.frombuffer(text.encode() + b"\0", dtype=np.uint8).copy()
    _KEEPALIVE.append(buf)
    return buf.ctypes.data, buf


def _handler_source(
    kernels: Sequence[Kernel], in_sig: Sequence[tuple], out_sig: Sequence[tuple]
) -> tuple[str, dict[str, str]]:
    """Python source of the cfunc body for this signature, plus its error messages."""
    n_in, n_out = len(in_sig), len(out_sig)
    msgs: dict[str, str] = {}
    lines = [
        "def handler(frame):",
        "    f = addr_of(frame)",
        "    ext = load_i64(f, FRAME_EXTENSION_START)",
        # XLA calls every typed handler once at registration, with a metadata extension,
        # to learn which FFI API version it was built against.
        "    if ext != 0 and load_i32(ext, EXT_TYPE) == EXTENSION_METADATA:",
        "        meta = load_i64(ext, METAEXT_METADATA)",
        "        store_i64(meta, META_VERSION_STRUCT_SIZE, API_VERSION_STRUCT_SIZE)",
        "        store_i64(meta, META_VERSION_EXT, 0)",
        "        store_i32(meta, META_VERSION_MAJOR, API_MAJOR)",
        "        store_i32(meta, META_VERSION_MINOR, API_MINOR)",
        "        store_i32(meta, META_TRAITS, 0)",
        "        store_i64(meta, META_STATE_TYPE_ID, 0)",
        "        return null()",
        "    api = load_i64(f, FRAME_API)",
        f"    if load_i64(f, FRAME_ARGS_SIZE) != {n_in} or "
        f"load_i64(f, FRAME_RETS_SIZE) != {n_out}:",
        "        return create_error(api, MSG_arity, ERROR_INVALID_ARGUMENT)",
        "    argv = load_i64(f, FRAME_ARGS_ARGS)",
        "    retv = load_i64(f, FRAME_RETS_RETS)",
    ]
    msgs["arity"] = f"expected {n_in} inputs and {n_out} outputs"
    bufs = [(f"a{i}", dt, r, "argv", i) for i, (dt, r) in enumerate(in_sig)]
    bufs += [(f"o{j}", dt, r, "retv", j) for j, (dt, r) in enumerate(out_sig)]
    for name, dtype, rank, vec, k in bufs:
        what = f"{'input' if name[0] == 'a' else 'output'} {k}"
        msgs[f"dtype_{name}"] = f"{what} is not {dtype}; the handler was compiled for {dtype}"
        msgs[f"rank_{name}"] = f"{what} does not have the rank the handler was compiled for"
        lines += [
            f"    b_{name} = load_i64({vec} + {8 * k}, 0)",
            f"    if load_i32(b_{name}, BUF_DTYPE) != {abi.DTYPE_CODES[dtype]}:",
            f"        return create_error(api, MSG_dtype_{name}, ERROR_INVALID_ARGUMENT)",
            f"    p_{name} = load_i64(b_{name}, BUF_DATA)",
            f"    d_{name} = load_i64(b_{name}, BUF_DIMS)",
            f"    nb_{name} = load_i64(b_{name}, BUF_RANK) - {rank}",
        ]
    # All buffers carry the same number of leading batch dims (expand_dims batching); the
    # first output has the full batch shape.
    lines.append("    nb = nb_o0")
    for name, *_ in bufs:
        lines += [
            f"    if nb_{name} != nb:",
            f"        return create_error(api, MSG_rank_{name}, ERROR_INVALID_ARGUMENT)",
        ]
    for name, _dtype, rank, _vec, _k in bufs:
        size = " * ".join([f"load_i64(d_{name} + 8 * (nb + {c}), 0)" for c in range(rank)])
        lines.append(f"    n_{name} = {size or '1'}")
        if rank:
            dims = ", ".join(f"load_i64(d_{name} + 8 * (nb + {c}), 0)" for c in range(rank))
            lines.append(f"    s_{name} = ({dims},)")
    lines += [
        "    nbatch = 1",
        "    for k in range(nb):",
        "        nbatch *= load_i64(d_o0 + 8 * k, 0)",
    ]
    msgs["bcast"] = "an input's batch dimensions do not broadcast against the output's"
    lines += ["    for b in range(nbatch):", "        rem = b"]
    for i in range(n_in):
        lines += [f"        off_a{i} = 0", f"        st_a{i} = n_a{i}"]
    lines += [
        "        for k in range(nb - 1, -1, -1):",
        "            size = load_i64(d_o0 + 8 * k, 0)",
        "            idx = rem % size",
        "            rem //= size",
    ]
    for i in range(n_in):
        lines += [
            f"            dim = load_i64(d_a{i} + 8 * k, 0)",
            "            if dim == size:",
            f"                off_a{i} += idx * st_a{i}",
            "            elif dim != 1:",
            "                return create_error(api, MSG_bcast, ERROR_INVALID_ARGUMENT)",
            f"            st_a{i} *= dim",
        ]
    for i, (dtype, rank) in enumerate(in_sig):
        ptr = f"PTR_a{i}(p_a{i} + off_a{i} * {dtype.itemsize})"
        view = f"{ptr}[0]" if rank == 0 else f"carray({ptr}, s_a{i})"
        lines.append(f"        x{i} = {view}")
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
            dtype = out_sig[j][0]
            value = f"r{k}" if kernel.n_out == 1 else f"r{k}[{m}]"
            msgs[f"size_o{j}"] = (
                f"{kernel.label} returned a result for output {j} whose number of elements "
                f"differs from the declared output shape; fix the declared shape or the function"
            )
            lines += [
                f"        if not store(PTR_o{j}(p_o{j} + b * n_o{j} * {dtype.itemsize}), "
                f"n_o{j}, {value}):",
                f"            return create_error(api, MSG_size_o{j}, ERROR_FAILED_PRECONDITION)",
            ]
        j0 += kernel.n_out
    lines.append("    return null()")
    return "\n".join(lines) + "\n", msgs


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
        src, msgs = _handler_source(kernels, in_sig, out_sig)
        namespace: dict[str, object] = {
            name: getattr(abi, name) for name in dir(abi) if name.isupper() or name[0] != "_"
        }
        namespace.update(carray=numba.carray, store=_store)
        for k, kernel in enumerate(kernels):
            namespace[f"K{k}"] = kernel.fn
        for i, (dtype, _) in enumerate(in_sig):
            namespace[f"PTR_a{i}"] = abi.POINTER_OF[dtype]
        for j, (dtype, _) in enumerate(out_sig):
            namespace[f"PTR_o{j}"] = abi.POINTER_OF[dtype]
        for key_, text in msgs.items():
            namespace[f"MSG_{key_}"], _ = _message(f"numba_to_jax({fn_label}): {text}")
        exec(compile(src, f"<numba_to_jax handler for {fn_label}>", "exec"), namespace)
        cfunc = numba.cfunc(types.voidptr(types.voidptr), nopython=True)(namespace["handler"])
        name = f"pymc_jaxops_numba_{next(_COUNTER)}"
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(cfunc.ctypes), platform="cpu")
        _KEEPALIVE.append(cfunc)
        _TARGETS[key] = name
        return name
