"""Start a ``multiprocessing`` process in a fresh interpreter that never re-runs ``__main__``.

``spawn`` solves the live-JAX-runtime problem of ``fork`` (the child is a new interpreter)
but brings its own: before it unpickles the process object, a spawned child re-executes the
parent's ``__main__`` module (``init_main_from_path`` / ``init_main_from_name`` in the
preparation data), so a script without ``if __name__ == "__main__":`` starts sampling again
inside every worker and dies in its bootstrapping phase. Here the preparation data keeps
everything else (``sys.path``, working directory, ``sys.argv``, authkey) and drops those two
keys, and the process object is pickled with cloudpickle, so whatever the worker needs from
``__main__`` (the user's JAX function, a ``CustomDist`` lambda) travels by value.

:class:`Popen` follows the protocol of the standard library's ``Popen`` classes
(``multiprocessing.popen_*``): it is created by ``Process._Popen`` from ``Process.start``.
"""

from __future__ import annotations

import io
import os
from collections import ChainMap
from multiprocessing import popen_spawn_posix, spawn, util
from multiprocessing.context import set_spawning_popen
from multiprocessing.reduction import ForkingPickler
from typing import Any

import cloudpickle

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


class _Pickler(cloudpickle.Pickler):
    # cloudpickle's reducers first (methods, partials, code), then multiprocessing's for
    # what lives in shared memory or carries a file descriptor (Connection, RawArray,
    # socket). The latter dict is read live: PyMC registers its RawArray types at run time.
    dispatch_table = ChainMap(cloudpickle.Pickler.dispatch_table, ForkingPickler._extra_reducers)

    def reducer_override(self, obj: Any) -> Any:
        # A rich progress bar holds locks and the parent's console: the worker's copy was
        # never drawn (under fork too), so it gets one that does nothing.
        if type(obj).__module__.startswith("rich.") and hasattr(obj, "advance"):
            return _NullProgress, ()
        return super().reducer_override(obj)


class _NullProgress:
    """Stands in for a rich progress bar in a worker: every method does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _preparation_data(name: str) -> dict[str, Any]:
    data = spawn.get_preparation_data(name)
    for key in _MAIN_KEYS:
        data.pop(key, None)
    return data


def _child_program(tracker_fd: int, pipe_handle: int, xla_flags: str | None) -> str:
    lines = ["import os"]
    if xla_flags:
        old = os.environ.get("XLA_FLAGS", "")
        lines.append(f"os.environ['XLA_FLAGS'] = {(old + ' ' + xla_flags).strip()!r}")
    lines.append("from multiprocessing.spawn import spawn_main")
    lines.append(f"spawn_main(tracker_fd={tracker_fd}, pipe_handle={pipe_handle})")
    return "; ".join(lines)


class Popen(popen_spawn_posix.Popen):
    """A spawned child that is not given the parent's ``__main__`` to run."""

    method = "spawn"
    xla_flags: str | None = None

    def _launch(self, process_obj: Any) -> None:
        from multiprocessing import resource_tracker

        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        payload = io.BytesIO()
        set_spawning_popen(self)  # lets Connection / RawArray / authkey pickle their fds
        try:
            ForkingPickler(payload).dump(_preparation_data(process_obj._name))
            _Pickler(payload, protocol=-1).dump(process_obj)
        finally:
            set_spawning_popen(None)

        to_child_r, to_child_w = os.pipe()
        sentinel_r, sentinel_w = os.pipe()  # EOF on sentinel_r once the child is gone
        try:
            program = _child_program(tracker_fd, to_child_r, self.xla_flags)
            flags = util._args_from_interpreter_flags()
            command = [spawn.get_executable(), *flags, "-c", program, "--multiprocessing-fork"]
            self._fds.extend([to_child_r, sentinel_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), command, self._fds)
            self.sentinel = sentinel_r
            with open(to_child_w, "wb", closefd=False) as f:
                f.write(payload.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, (sentinel_r, to_child_w))
            os.close(to_child_r)
            os.close(sentinel_w)
