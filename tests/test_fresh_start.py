"""The fresh-interpreter start of one process: no ``__main__`` re-run, clear errors on death.

The targets here are standard-library callables, so each child starts in well under a second:
``Connection.recv`` waits for the parent, ``Connection.close`` returns at once.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import types
from multiprocessing.connection import Connection

import cloudpickle
import pytest
from rich.progress import Progress

from pymc_jaxops import _fresh_start
from pymc_jaxops.multiprocess import WorkerProcessError


def _start(target, *args, **attributes):
    """Start ``target(*args)`` in a fresh interpreter, as for a PyMC chain worker.

    ``attributes`` are set on the process object: the child unpickles them after ``args``.
    """
    fork_process = multiprocessing.context.ForkProcess
    process = fork_process(target=target, args=args, daemon=True)
    for name, value in attributes.items():
        setattr(process, name, value)
    # On the class, not the instance: the child must not need pymc_jaxops to unpickle it.
    original = fork_process.__dict__["_Popen"]
    fork_process._Popen = staticmethod(_fresh_start.Popen)
    try:
        process.start()
    finally:
        fork_process._Popen = original
    return process


def test_preparation_data_keeps_paths_and_drops_main():
    from pymc_jaxops._upstream import multiprocessing as upstream_mp

    data = upstream_mp.preparation_data("worker")
    assert not {"init_main_from_path", "init_main_from_name"} & set(data)
    assert data["sys_path"] and data["dir"] == os.getcwd()


def test_progress_bar_becomes_a_stub_and_main_functions_travel_by_value():
    main_function = types.FunctionType((lambda x: x + 1).__code__, {}, "in_main")
    main_function.__module__ = "__main__"
    buffer = io.BytesIO()
    with Progress(disable=True) as progress:
        _fresh_start._Pickler(buffer, protocol=-1).dump((progress, main_function))
    stub, function = cloudpickle.loads(buffer.getvalue())
    assert stub.advance(3) is None and stub.anything() is None
    assert function(1) == 2


def test_killed_worker_makes_recv_raise():
    parent_end, worker_end = multiprocessing.Pipe()
    process = _start(Connection.recv, worker_end)
    worker_end.close()
    os.kill(process.pid, signal.SIGKILL)
    assert parent_end.poll(30)
    with pytest.raises(WorkerProcessError, match=r"killed by signal 9 \(SIGKILL\)"):
        parent_end.recv()
    process.join(10)
    assert process.exitcode == -signal.SIGKILL


def test_worker_that_returns_early_makes_recv_raise():
    parent_end, worker_end = multiprocessing.Pipe()
    process = _start(Connection.close, worker_end)
    worker_end.close()
    assert parent_end.poll(30)
    with pytest.raises(WorkerProcessError, match=r"exited with code 0 before sending"):
        parent_end.recv()
    process.join(10)


def test_start_up_error_is_reported(monkeypatch):
    # A function importable here but not in the child: the child fails while unpickling.
    module = types.ModuleType("pymc_jaxops_missing_module")
    exec("def target(conn):\n    conn.send('never')\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    parent_end, worker_end = multiprocessing.Pipe()
    process = _start(module.target, worker_end)
    worker_end.close()
    assert parent_end.poll(30)
    with pytest.raises(WorkerProcessError, match="No module named 'pymc_jaxops_missing_module'"):
        parent_end.recv()
    process.join(10)
    assert process.exitcode == 1


def test_normal_exit_after_the_last_message_is_not_an_error():
    parent_end, worker_end = multiprocessing.Pipe()
    process = _start(Connection.send, worker_end, "done")
    worker_end.close()
    assert parent_end.poll(30)
    assert parent_end.recv() == "done"  # what the sampler waits for arrives first
    process.join(10)
    assert process.exitcode == 0


def test_unpicklable_work_is_a_pickling_error():
    # pm.sample answers a PicklingError by sampling in one process, with a warning.
    lock = threading.Lock()
    with pytest.raises(pickle.PicklingError, match="cannot send the work of"):
        _start(Connection.recv, lock)


class _Gate:
    """Unpickles to ``gate.poll(timeout)``: the child waits for the parent there, at most that."""

    def __init__(self, gate: Connection, timeout: float) -> None:
        self.gate, self.timeout = gate, timeout

    def __reduce__(self):
        return Connection.poll, (self.gate, self.timeout)


def test_start_returns_while_children_still_read_their_payloads():
    # Each child waits, in the middle of unpickling its payload, until the parent opens its
    # gate; 1 MiB more of payload follows, more than a pipe holds. The parent opens the gates
    # only once both start() calls returned: had start() waited for its child to read the
    # payload (the child imports the sampler's modules meanwhile), chain processes would
    # start one after another, and here each child would give up waiting after 30 s.
    gates, results, processes = [], [], []
    for _ in range(2):
        gate_r, gate_w = multiprocessing.Pipe(duplex=False)
        result_r, result_w = multiprocessing.Pipe(duplex=False)
        processes.append(
            _start(Connection.send, result_w, _Gate(gate_r, 30.0), ballast=bytes(2**20))
        )
        gate_r.close()
        result_w.close()
        gates.append(gate_w)
        results.append(result_r)
    for gate in gates:
        with contextlib.suppress(BrokenPipeError):  # a child that gave up is gone
            gate.send("open")
    assert all(r.poll(60) for r in results)
    assert [r.recv() for r in results] == [True, True]  # each child saw its gate open
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
