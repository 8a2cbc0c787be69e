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
(``multiprocessing.popen_*``): ``Process.start`` creates it through its start hook.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import threading
from collections import ChainMap
from multiprocessing.connection import Connection, wait
from typing import Any, ClassVar

import cloudpickle
from rich.progress import Progress  # PyMC's progress bars

from pymc_jaxops._ops import for_this_machine
from pymc_jaxops._upstream import multiprocessing as _mp
from pymc_jaxops.errors import WorkerProcessError


class _Pickler(cloudpickle.Pickler):
    # cloudpickle's reducers first (methods, partials, code), then multiprocessing's for
    # what lives in shared memory or carries a file descriptor (Connection, RawArray,
    # socket). The latter dict is read live: PyMC registers its RawArray types at run time.
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        cloudpickle.Pickler.dispatch_table, _mp.extra_reducers()
    )

    def reducer_override(self, obj: Any) -> Any:
        # A rich progress bar holds locks and the parent's console: the worker's copy was
        # never drawn (under fork too), so it gets one that does nothing.
        if isinstance(obj, Progress):
            return _NullProgress, ()
        return super().reducer_override(obj)


class _NullProgress:
    """Stands in for a rich progress bar in a worker: every method does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


# The child's whole program. An error before the process object exists (a module the user's
# function needs cannot be imported, say) is written to error_fd for the parent's watcher.
_CHILD_PROGRAM = """
import os, traceback
try:
    from multiprocessing.spawn import spawn_main
    spawn_main(tracker_fd={tracker_fd}, pipe_handle={pipe_handle})
except SystemExit:
    raise
except BaseException:
    with os.fdopen({error_fd}, "w") as error_file:
        error_file.write(traceback.format_exc())
    raise
"""


def _child_program(tracker_fd: int, pipe_handle: int, error_fd: int) -> str:
    return _CHILD_PROGRAM.format(tracker_fd=tracker_fd, pipe_handle=pipe_handle, error_fd=error_fd)


def _raise_worker_error(message: str) -> None:
    raise WorkerProcessError(message)


class _RaiseWhenReceived:
    # Unpickling this raises: whichever PyMC loop is blocked in ``recv()`` on the worker's
    # pipe gets a WorkerProcessError instead of an EOFError, whatever its message protocol.
    def __init__(self, message: str) -> None:
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return _raise_worker_error, (self.message,)


def _how_it_ended(popen: Any) -> str:
    signum = status = None
    try:
        if not hasattr(os, "waitid"):  # macOS: only what join() found out, if anything
            raise ChildProcessError
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)  # peek, do not reap
    except ChildProcessError:  # already reaped by join(): the return code is known
        status = popen.returncode
        if status is not None and status < 0:
            signum, status = -status, None
    else:
        if info is not None and info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            signum = info.si_status
        elif info is not None:
            status = info.si_status
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {signum} ({name})"
    return "ended" if status is None else f"exited with code {status}"


def _watch(
    popen: Any, name: str, sentinel: int, error_r: int | None, reply_fd: int | None
) -> None:
    """Wait for the child to end; then make the parent's pending ``recv()`` raise."""
    try:
        wait([sentinel])
        error = b""
        with contextlib.suppress(OSError):
            while error_r is not None and (chunk := os.read(error_r, 65536)):
                error += chunk
        how = _how_it_ended(popen)
        message = f"chain process {name!r} (pid {popen.pid}) {how}"
        if error:
            last = error.decode(errors="replace").strip().splitlines()[-1]
            message += f" while starting: {last} (its traceback is printed above)"
        else:
            message += " before sending what the sampler was waiting for"
            if how.endswith(" 0"):
                message += " (an error it caught and logged, printed above?)"
        if reply_fd is not None:
            reply = Connection(reply_fd, readable=False)
            reply_fd = None  # the Connection closes it
            with contextlib.suppress(OSError):
                reply.send(_RaiseWhenReceived(message))
            reply.close()
    finally:
        for fd in (sentinel, error_r, reply_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _worker_end_of_pipe(process_obj: Any) -> Connection | None:
    # PyMC hands each chain process its end of a Pipe as a positional argument.
    for arg in _mp.process_args(process_obj):
        if isinstance(arg, Connection):
            return arg
    return None


def watch(popen: Any, process_obj: Any, error_r: int | None = None) -> None:
    """Make the parent's wait on a chain process raise once the process has ended.

    Call right after the process started, while the parent still holds the worker's end of
    the pipe: a copy of it keeps the parent's end from seeing EOF until a thread has written
    why the worker is gone (see :class:`WorkerProcessError`). ``error_r`` is the read end
    of a pipe the child writes its start-up traceback to, if any.
    """
    worker_end = _worker_end_of_pipe(process_obj)
    reply_fd = None if worker_end is None else os.dup(worker_end.fileno())
    threading.Thread(
        target=_watch,
        args=(popen, process_obj.name, os.dup(popen.sentinel), error_r, reply_fd),
        name=f"pymc_jaxops watcher of {process_obj.name}",
        daemon=True,
    ).start()


class Popen(_mp.SpawnPopen):
    """A spawned child that is not given the parent's ``__main__`` to run."""

    method = "spawn"
    _fds: list[int]

    def _launch(self, process_obj: Any) -> None:
        tracker_fd = _mp.resource_tracker_fd()
        self._fds.append(tracker_fd)
        payload = io.BytesIO()
        _mp.set_spawning_popen(self)  # lets Connection / RawArray / authkey pickle their fds
        try:
            _mp.ForkingPickler(payload).dump(_mp.preparation_data(process_obj.name))
            with for_this_machine():  # the plans timed here travel with the Ops
                _Pickler(payload, protocol=-1).dump(process_obj)
        except pickle.PicklingError:
            raise
        except Exception as error:
            # A PicklingError is what pm.sample answers by sampling in one process.
            raise pickle.PicklingError(
                f"pymc_jaxops: cannot send the work of {process_obj.name!r} to a fresh "
                f"process, because JAX is running here and forking it would hang: {error}"
            ) from error
        finally:
            _mp.set_spawning_popen(None)

        to_child_r, to_child_w = os.pipe()
        sentinel_r, sentinel_w = os.pipe()  # EOF on sentinel_r once the child is gone
        error_r, error_w = os.pipe()
        try:
            program = _child_program(tracker_fd, to_child_r, error_w)
            executable = _mp.spawn_executable()
            flags = _mp.interpreter_flags()
            command = [executable, *flags, "-c", program, "--multiprocessing-fork"]
            self._fds.extend([to_child_r, sentinel_w, error_w])
            self.pid = _mp.spawnv_passfds(executable, command, self._fds)
        except BaseException:
            for fd in (to_child_w, sentinel_r, error_r):
                os.close(fd)
            raise
        finally:
            for fd in (to_child_r, sentinel_w, error_w):
                os.close(fd)
        self.sentinel = sentinel_r
        self.finalizer = _mp.Finalize(self, _mp.close_fds, (sentinel_r,))
        try:
            watch(self, process_obj, error_r)
        except BaseException:
            os.close(to_child_w)  # EOF: the child ends at once
            raise
        send_payload(to_child_w, payload.getvalue(), process_obj.name)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the child is gone (EPIPE): its watcher says how it ended
    finally:
        os.close(fd)  # EOF: a child still reading fails to unpickle, and reports that


def send_payload(fd: int, data: bytes, name: str) -> None:
    """Write ``data`` to the child's pipe ``fd`` from a thread, then close ``fd``.

    The child reads its payload while it unpickles it, and unpickling imports what the work
    needs (pymc, jax: seconds). Written here, the parent would wait for all that before it
    could start the next chain process, so the workers would start one after the other.
    Messages the parent sends the worker meanwhile (PyMC's "start") go through the
    worker's own ``Pipe`` and wait there until the worker reads them.
    """
    writer = threading.Thread(
        target=_write_all, args=(fd, data), name=f"pymc_jaxops payload of {name}", daemon=True
    )
    try:
        writer.start()
    except RuntimeError:  # no thread: the child reads EOF, fails, and its watcher reports it
        os.close(fd)
        raise
