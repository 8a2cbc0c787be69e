"""The XLA FFI C ABI (``xla/ffi/api/c_api.h``, API 0.3 to 0.5) as seen from Numba.

The struct layouts are written once as :mod:`ctypes` structures transcribed from the header
that jaxlib ships (``jax.ffi.include_dir()``), so the byte offsets the Numba handler uses are
computed by the platform's C layout rules rather than counted by hand.  The intrinsics below
are the only place where raw pointers are touched; the ``@njit`` helpers at the end do
everything a handler needs that does not depend on the user's kernel, so a new handler only
types and lowers its few kernel-specific lines.  Those helpers are cached on disk; because
Numba invalidates a cache only when the defining file changes, the layout, the intrinsics
and the helpers must stay in this one file.

Buffers are numbered inputs first, then outputs; ``n_in`` says where outputs start.
"""

from __future__ import annotations

import ctypes as C
import re
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from pymc_jaxops._upstream.numba import cgutils


def _header_version() -> tuple[int, int]:
    # The version of the header jaxlib ships (0.3 with jax 0.10, 0.5 with jax 0.12): the
    # handler answers with the API it was built against. The fields it reads have the same
    # layout in both (tests/bridge/test_xla_ffi.py compiles the header to check).
    import jax

    try:
        text = (Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h").read_text()
        found = [re.search(rf"#define XLA_FFI_API_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR")]
        if found[0] and found[1]:
            return int(found[0].group(1)), int(found[1].group(1))
    except OSError:
        pass
    return 0, 3


# XLA asks every typed handler for its API version at registration time and refuses
# handlers that do not answer.
API_MAJOR, API_MINOR = _header_version()

EXTENSION_METADATA = 1
ERROR_INVALID_ARGUMENT = 3
ERROR_FAILED_PRECONDITION = 9
ERROR_INTERNAL = 13


class _ExtensionBase(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("type", C.c_int), ("next", C.c_void_p)]


class _ApiVersion(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("major_version", C.c_int),
        ("minor_version", C.c_int),
    ]


class _ErrorCreateArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("message", C.c_char_p),
        ("errc", C.c_int),
    ]


class _Buffer(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("dtype", C.c_int),
        ("data", C.c_void_p),
        ("rank", C.c_int64),
        ("dims", C.POINTER(C.c_int64)),
    ]


class _Args(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("size", C.c_int64),
        ("types", C.c_void_p),
        ("args", C.c_void_p),
    ]


class _Attrs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("size", C.c_int64),
        ("types", C.c_void_p),
        ("names", C.c_void_p),
        ("attrs", C.c_void_p),
    ]


class _CallFrame(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("api", C.c_void_p),
        ("ctx", C.c_void_p),
        ("stage", C.c_int),
        ("args", _Args),
        ("rets", _Args),  # XLA_FFI_Rets has the same layout as XLA_FFI_Args
        ("attrs", _Attrs),
        ("future", C.c_void_p),
    ]


class _Metadata(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("api_version", _ApiVersion),
        ("traits", C.c_uint32),
        ("state_type_id", C.c_int64),
    ]


class _MetadataExtension(C.Structure):
    _fields_ = [("extension_base", _ExtensionBase), ("metadata", C.c_void_p)]


class _ApiHead(C.Structure):
    # Only the leading fields of XLA_FFI_Api that the handler needs.
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("extension_start", C.c_void_p),
        ("api_version", _ApiVersion),
        ("internal_api", C.c_void_p),
        ("error_create", C.c_void_p),
    ]


def _end(struct: type[C.Structure], field: str) -> int:
    # XLA_FFI_STRUCT_SIZE(struct, last_field): offsetof + sizeof of the last field.
    f = getattr(struct, field)
    return f.offset + f.size


# Byte offsets, named after the C expression they stand for.
FRAME_EXTENSION_START = _CallFrame.extension_start.offset
FRAME_API = _CallFrame.api.offset
FRAME_STAGE = _CallFrame.stage.offset
FRAME_ARGS_SIZE = _CallFrame.args.offset + _Args.size.offset
FRAME_ARGS_ARGS = _CallFrame.args.offset + _Args.args.offset
FRAME_RETS_SIZE = _CallFrame.rets.offset + _Args.size.offset
FRAME_RETS_RETS = _CallFrame.rets.offset + _Args.args.offset
EXT_TYPE = _ExtensionBase.type.offset
METAEXT_METADATA = _MetadataExtension.metadata.offset
META_VERSION_STRUCT_SIZE = _Metadata.api_version.offset + _ApiVersion.struct_size.offset
META_VERSION_EXT = _Metadata.api_version.offset + _ApiVersion.extension_start.offset
META_VERSION_MAJOR = _Metadata.api_version.offset + _ApiVersion.major_version.offset
META_VERSION_MINOR = _Metadata.api_version.offset + _ApiVersion.minor_version.offset
META_TRAITS = _Metadata.traits.offset
META_STATE_TYPE_ID = _Metadata.state_type_id.offset
API_ERROR_CREATE = _ApiHead.error_create.offset
BUF_DTYPE = _Buffer.dtype.offset
BUF_DATA = _Buffer.data.offset
BUF_RANK = _Buffer.rank.offset
BUF_DIMS = _Buffer.dims.offset
API_VERSION_STRUCT_SIZE = _end(_ApiVersion, "minor_version")
ERROR_CREATE_ARGS_STRUCT_SIZE = _end(_ErrorCreateArgs, "errc")
ERROR_CREATE_MESSAGE = _ErrorCreateArgs.message.offset
ERROR_CREATE_ERRC = _ErrorCreateArgs.errc.offset

# XLA_FFI_DataType codes (xla_data.proto PrimitiveType) for the dtypes the bridge accepts.
DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype(np.float32): 11,
    np.dtype(np.float64): 12,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
}


def _addr(builder: ir.IRBuilder, base: ir.Value, offset: int, ty: ir.Type) -> ir.Value:
    raw = builder.add(base, ir.Constant(base.type, offset))
    return builder.inttoptr(raw, ty.as_pointer())


def _at(builder: ir.IRBuilder, base: ir.Value, offset: ir.Value, ty: ir.Type) -> ir.Value:
    return builder.inttoptr(builder.add(base, offset), ty.as_pointer())


# Offsets are ordinary int64 arguments, not literals: a literal would make Numba type and
# lower a fresh specialization per distinct offset, which made each handler take seconds to
# compile. LLVM folds the constant additions all the same.


@intrinsic
def addr_of(typingctx, ptr):
    """``(intptr_t) ptr`` for a ``void*``."""

    def codegen(context, builder, sig, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return types.int64(types.voidptr), codegen


@intrinsic
def null(typingctx):
    """The ``NULL`` that tells XLA a handler succeeded."""

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(8).as_pointer(), None)

    return types.voidptr(), codegen


@intrinsic
def load_i64(typingctx, base, offset):
    """``*(int64_t*)(base + offset)``."""

    def codegen(context, builder, sig, args):
        return builder.load(_at(builder, args[0], args[1], ir.IntType(64)))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def load_i32(typingctx, base, offset):
    """``*(int32_t*)(base + offset)``, sign-extended."""

    def codegen(context, builder, sig, args):
        val = builder.load(_at(builder, args[0], args[1], ir.IntType(32)))
        return builder.sext(val, ir.IntType(64))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def store_i64(typingctx, base, offset, value):
    """``*(int64_t*)(base + offset) = value``."""

    def codegen(context, builder, sig, args):
        builder.store(args[2], _at(builder, args[0], args[1], ir.IntType(64)))
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


@intrinsic
def store_i32(typingctx, base, offset, value):
    """``*(int32_t*)(base + offset) = value``."""

    def codegen(context, builder, sig, args):
        ptr = _at(builder, args[0], args[1], ir.IntType(32))
        builder.store(builder.trunc(args[2], ir.IntType(32)), ptr)
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


def _typed_pointer(nbtype):
    @intrinsic
    def as_pointer(typingctx, addr):
        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(nbtype).as_pointer())

        return types.CPointer(nbtype)(types.int64), codegen

    return as_pointer


POINTER_OF: dict[np.dtype, object] = {
    np.dtype(np.float32): _typed_pointer(types.float32),
    np.dtype(np.float64): _typed_pointer(types.float64),
    np.dtype(np.int32): _typed_pointer(types.int32),
    np.dtype(np.int64): _typed_pointer(types.int64),
}


@intrinsic
def create_error(typingctx, api, message, errc):
    """``api->XLA_FFI_Error_Create(&{message, errc})``: the typed-FFI way to fail.

    ``message`` is the address of a NUL-terminated string kept alive by the caller; XLA
    copies it into the status it builds.
    """

    def codegen(context, builder, sig, args):
        api_addr, msg_addr, code = args
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(i8p, [i8p])
        fn = builder.load(_addr(builder, api_addr, API_ERROR_CREATE, fnty.as_pointer()))
        buf = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(8), 32))
        base = builder.ptrtoint(buf, ir.IntType(64))
        i64 = ir.IntType(64)
        builder.store(
            ir.Constant(i64, ERROR_CREATE_ARGS_STRUCT_SIZE), _addr(builder, base, 0, i64)
        )
        builder.store(ir.Constant(i64, 0), _addr(builder, base, 8, i64))
        builder.store(msg_addr, _addr(builder, base, ERROR_CREATE_MESSAGE, i64))
        builder.store(
            builder.trunc(code, ir.IntType(32)),
            _addr(builder, base, ERROR_CREATE_ERRC, ir.IntType(32)),
        )
        return builder.call(fn, [builder.bitcast(buf, i8p)])

    return types.voidptr(types.int64, types.int64, types.int64), codegen


@njit(cache=True)
def answer_metadata(f):
    """XLA calls every typed handler once at registration with a metadata extension, to
    learn the FFI API version it was built against; answer it and return True."""
    ext = load_i64(f, FRAME_EXTENSION_START)
    if ext == 0 or load_i32(ext, EXT_TYPE) != EXTENSION_METADATA:
        return False
    meta = load_i64(ext, METAEXT_METADATA)
    store_i64(meta, META_VERSION_STRUCT_SIZE, API_VERSION_STRUCT_SIZE)
    store_i64(meta, META_VERSION_EXT, 0)
    store_i32(meta, META_VERSION_MAJOR, API_MAJOR)
    store_i32(meta, META_VERSION_MINOR, API_MINOR)
    store_i32(meta, META_TRAITS, 0)
    store_i64(meta, META_STATE_TYPE_ID, 0)
    return True


@njit(cache=True)
def api_of(f):
    return load_i64(f, FRAME_API)


@njit(cache=True)
def _buffer(f, i, n_in):
    if i < n_in:
        return load_i64(load_i64(f, FRAME_ARGS_ARGS), 8 * i)
    return load_i64(load_i64(f, FRAME_RETS_RETS), 8 * (i - n_in))


@njit(cache=True)
def data(f, i, n_in):
    return load_i64(_buffer(f, i, n_in), BUF_DATA)


@njit(cache=True)
def dim(f, i, n_in, k):
    return load_i64(load_i64(_buffer(f, i, n_in), BUF_DIMS), 8 * k)


@njit(cache=True)
def core_size(f, i, n_in, nb, rank):
    n = 1
    for k in range(nb, nb + rank):
        n *= dim(f, i, n_in, k)
    return n


@njit(cache=True)
def check(f, codes, ranks, n_in):
    """Leading batch-dim count ``nb`` (>= 0) if the frame matches, else ``-1 - error``.

    Errors: 0 wrong arity; ``1 + i`` buffer i has the wrong dtype; ``1 + n + i`` buffer i
    has the wrong rank; ``1 + 2n`` an input's batch dims do not broadcast to the output's.
    All buffers carry the same number of leading batch dims (``expand_dims`` batching);
    output 0 has the full batch shape, inputs have each batch dim either in full or as 1.
    """
    n = len(codes)
    if load_i64(f, FRAME_ARGS_SIZE) != n_in or load_i64(f, FRAME_RETS_SIZE) != n - n_in:
        return -1
    nb = load_i64(_buffer(f, n_in, n_in), BUF_RANK) - ranks[n_in]
    for i in range(n):
        b = _buffer(f, i, n_in)
        if load_i32(b, BUF_DTYPE) != codes[i]:
            return -2 - i
        if load_i64(b, BUF_RANK) - ranks[i] != nb:
            return -2 - n - i
    for i in range(n):
        for k in range(nb):
            d = dim(f, i, n_in, k)
            if d != 1 and d != dim(f, n_in, n_in, k):
                return -2 - 2 * n
    return nb


@njit(cache=True)
def batch_size(f, n_in, nb):
    return core_size(f, n_in, n_in, 0, nb)


@njit(cache=True)
def input_offset(f, i, n_in, nb, b, rank):
    """Element offset of batch element ``b`` in input ``i``; size-1 batch dims broadcast."""
    if nb == 0:
        return 0
    off = 0
    stride = core_size(f, i, n_in, nb, rank)
    for k in range(nb - 1, -1, -1):
        size = dim(f, n_in, n_in, k)
        idx = b % size
        b //= size
        d = dim(f, i, n_in, k)
        if d != 1:
            off += idx * stride
        stride *= d
    return off
