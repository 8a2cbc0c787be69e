"""XLA executables kept on disk: a new session or a chain process loads what another compiled.

A jitted function compiles its program on the first call with each input signature. Here
that call lowers the function (tracing it, as ``jax.jit`` does), looks the lowered program
up on disk by a hash of its text and of this machine, and loads the executable if it is
there; otherwise it compiles and writes it. The key is the program itself, so an entry
can only be loaded by a program equal to the one that wrote it.

Programs that call back into this process (host callbacks, the Numba bridge's FFI targets,
which are named per process) are never written: their executables point at functions that
another process does not have under those names.

The directory is ``PYMC_JAXOPS_XLA_CACHE`` (``off`` turns this off), by default
``pymc_jaxops_xla`` in PyTensor's compile directory. It is pruned to ``_MAX_BYTES``, oldest
first; ``clear_caches()`` empties it.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from pymc_jaxops._xla_disk import on_disk
>>> square = on_disk(jax.jit(lambda x: x * x))
>>> float(square(jnp.float32(3.0)))
9.0
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jaxlib
import numpy as np
from jax.experimental import serialize_executable

from pymc_jaxops import _caches, _config

__all__ = ["directory", "on_disk"]

_logger = logging.getLogger("pymc_jaxops")

_MAX_BYTES = 512 * 2**20
_SUFFIX = ".xla"
_NOT_PORTABLE = ("callback", "pymc_jaxops_numba_")
"""Custom-call targets in a program's text that name functions of this process only."""


def directory() -> Path | None:
    """Where executables are kept, or None when ``PYMC_JAXOPS_XLA_CACHE`` is ``off``."""
    setting = _config.xla_cache()
    if setting == "off":
        return None
    if setting == "auto":
        import pytensor

        return Path(pytensor.config.compiledir) / "pymc_jaxops_xla"
    return Path(setting)


def on_disk(jitted: Callable) -> Callable:
    """``jitted`` (a ``jax.jit`` function), its executables loaded from disk when there."""
    return _OnDisk(jitted)


class _OnDisk:
    """Calls the executable of the last input signature; looks others up on a miss."""

    __slots__ = ("__weakref__", "_by_signature", "_jitted", "_last", "_lock")

    def __init__(self, jitted: Callable):
        self._jitted = jitted
        self._last: Callable | None = None
        self._by_signature: dict[Any, Callable] = {}
        self._lock = threading.Lock()  # chains may run in threads (_thread_start.py)

    def __call__(self, *args):
        last = self._last
        if last is not None:
            try:
                return last(*args)
            except TypeError:
                # An executable refuses arguments of another signature with a TypeError
                # before it runs; one that is right for them raises it again below.
                if self._executable(args) is last:
                    raise
        return self._executable(args)(*args)

    def _executable(self, args: tuple) -> Callable:
        leaves, tree = jax.tree.flatten(args)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self._jitted  # inside someone's trace: JAX's own path
        signature = (tree, *((np.shape(x), _dtype(x)) for x in leaves))
        with self._lock:
            found = self._by_signature.get(signature)
            if found is None:
                found = self._by_signature[signature] = _load_or_compile(self._jitted, args)
            self._last = found
            return found


def _dtype(x) -> object:
    # Python scalars are weakly typed in JAX: they key apart from arrays of their dtype.
    return type(x) if isinstance(x, (bool, int, float, complex)) else np.result_type(x)


def _load_or_compile(jitted: Callable, args: tuple) -> Callable:
    where = directory()
    if where is None:
        return jitted
    lowered = jitted.lower(*args)  # type: ignore[attr-defined]
    text = lowered.as_text()
    if any(marker in text for marker in _NOT_PORTABLE):
        return jitted
    path = where / (_key(text) + _SUFFIX)
    compiled = _load(path)
    if compiled is None:
        compiled = lowered.compile()
        _store(path, compiled)
    return compiled


def _load(path: Path) -> Callable | None:
    try:
        with open(path, "rb") as file:
            payload, in_tree, out_tree = pickle.load(file)
        compiled = serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=jax.devices()[:1]
        )
        os.utime(path)  # recently used: pruned last
    except FileNotFoundError:
        return None
    except Exception as error:  # a torn or foreign file: compile and write it again
        _logger.debug("pymc_jaxops: could not load %s (%s); compiling", path, error)
        return None
    return compiled


def _store(path: Path, compiled: Any) -> None:
    try:
        blob = pickle.dumps(serialize_executable.serialize(compiled))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then renamed: a reader never sees half a file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_bytes(blob)
        os.replace(temporary, path)
        _prune(path.parent)
    except Exception as error:  # not serializable (closed-over constants, say), disk full
        _logger.debug("pymc_jaxops: did not keep %s on disk (%s)", path.name, error)


def _prune(where: Path) -> None:
    entries = []
    for path in where.glob("*" + _SUFFIX):
        try:
            stat = path.stat()
        except FileNotFoundError:  # pruned by another process meanwhile
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= _MAX_BYTES:
            break
        path.unlink(missing_ok=True)
        total -= size


def _key(text: str) -> str:
    digest = hashlib.sha256(_machine().encode())
    digest.update(text.encode())
    return digest.hexdigest()


@functools.cache
def _machine() -> str:
    """What an executable compiled here depends on besides its program."""
    device = jax.devices()[0]
    parts = [
        sys.version.split()[0],
        jax.__version__,
        jaxlib.__version__,
        device.platform,
        device.device_kind,
        getattr(device.client, "platform_version", ""),
        os.environ.get("XLA_FLAGS", ""),
        platform.machine(),
        _cpu(),
    ]
    return "\n".join(str(p) for p in parts)


def _cpu() -> str:
    # XLA compiles for this CPU's instruction set extensions.
    try:
        with open("/proc/cpuinfo") as file:
            lines = [line for line in file if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _clear() -> None:
    where = directory()
    if where is not None:
        for path in where.glob("*" + _SUFFIX):
            path.unlink(missing_ok=True)


_caches.register("XLA executables on disk", _clear)
