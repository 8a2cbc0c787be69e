"""Reading an XLA FFI call frame: Numba helpers shared by every generated handler.

Everything that does not depend on the user's kernel lives here, compiled once per process
(and cached on disk), so a new handler only types and lowers its few kernel-specific lines.
Buffers are numbered inputs first, then outputs; ``n_in`` says where outputs start.
"""

from __future__ import annotations

from numba import njit

from pymc_jaxops.bridge._xla_ffi import (
    API_MAJOR,
    API_MINOR,
    API_VERSION_STRUCT_SIZE,
    BUF_DATA,
    BUF_DIMS,
    BUF_DTYPE,
    BUF_RANK,
    EXT_TYPE,
    EXTENSION_METADATA,
    FRAME_API,
    FRAME_ARGS_ARGS,
    FRAME_ARGS_SIZE,
    FRAME_EXTENSION_START,
    FRAME_RETS_RETS,
    FRAME_RETS_SIZE,
    META_STATE_TYPE_ID,
    META_TRAITS,
    META_VERSION_EXT,
    META_VERSION_MAJOR,
    META_VERSION_MINOR,
    META_VERSION_STRUCT_SIZE,
    METAEXT_METADATA,
    load_i32,
    load_i64,
    store_i32,
    store_i64,
)


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
