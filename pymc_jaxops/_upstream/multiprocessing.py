"""The standard library's ``multiprocessing`` below its documented API.

What a chain-process start needs: the process object's target and arguments, the start
hook of the fork and forkserver contexts (``Process._Popen``), and the spawn machinery
(preparation data, fd passing, the pickler's reducers for pipes and shared memory).
Python 3.14 makes ``forkserver`` the default start method on Linux; its server imports the
user's ``__main__`` as ``spawn`` does, so both contexts are hooked.
"""

from __future__ import annotations

import multiprocessing.context as _context
from collections.abc import Callable, Iterator
from multiprocessing import popen_spawn_posix, resource_tracker, spawn
from multiprocessing import util as _util
from multiprocessing.context import set_spawning_popen
from multiprocessing.reduction import ForkingPickler
from typing import Any

from pymc_jaxops._upstream._touches import Touch

__all__ = [
    "HOOKED_PROCESSES",
    "Finalize",
    "ForkingPickler",
    "SpawnPopen",
    "close_fds",
    "extra_reducers",
    "hooked",
    "interpreter_flags",
    "preparation_data",
    "process_args",
    "process_target",
    "resource_tracker_fd",
    "set_spawning_popen",
    "start_hook",
    "spawn_executable",
    "spawnv_passfds",
]

util: Any = _util  # private helpers without type stubs
SpawnPopen: Any = popen_spawn_posix.Popen
Finalize = util.Finalize
close_fds = util.close_fds
spawnv_passfds = util.spawnv_passfds
spawn_executable = spawn.get_executable

# Absent on Windows, where there is no fork to make safe.
HOOKED_PROCESSES: tuple[Any, ...] = tuple(
    cls
    for cls in (
        getattr(_context, "ForkProcess", None),
        getattr(_context, "ForkServerProcess", None),
    )
    if cls is not None
)
_MARK = "_pymc_jaxops_original"

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def process_target(process_obj: Any) -> Any:
    """The function a ``Process`` runs."""
    return getattr(process_obj, "_target", None)


def process_args(process_obj: Any) -> tuple[Any, ...]:
    """The positional arguments a ``Process`` passes its target."""
    return tuple(getattr(process_obj, "_args", ()))


def preparation_data(name: str) -> dict[str, Any]:
    """What a spawned child is told (paths, cwd, argv, authkey), without ``__main__``."""
    data = spawn.get_preparation_data(name)
    for key in _MAIN_KEYS:
        data.pop(key, None)
    return data


def extra_reducers() -> Any:
    """The pickler's reducers for pipes, sockets and shared memory, read live (PyMC
    registers its shared-memory types at run time)."""
    return ForkingPickler._extra_reducers  # type: ignore[attr-defined]


def interpreter_flags() -> list[str]:
    """The flags this interpreter was started with, for a child to get the same."""
    return list(util._args_from_interpreter_flags())


def resource_tracker_fd() -> int:
    """The resource tracker's fd (started if it was not), for a child to inherit."""
    fd = resource_tracker.getfd()
    assert fd is not None  # getfd() starts the tracker
    return fd


def start_hook(
    name: str, wrap: Callable[[Callable[[Any], Any], str], Callable[[Any], Any]]
) -> Touch:
    """A touch putting ``wrap(original, method)`` around the ``_Popen`` of the fork and forkserver
    contexts' processes (``method`` is ``"fork"`` or ``"forkserver"``)."""

    def apply() -> Callable[[], None]:
        for cls in HOOKED_PROCESSES:
            original = cls._Popen
            if getattr(original, _MARK, None) is None:
                hooked = wrap(original, cls._start_method)
                setattr(hooked, _MARK, original)
                cls._Popen = staticmethod(hooked)
        return unhook

    def unhook() -> None:
        for cls in HOOKED_PROCESSES:
            original = getattr(cls._Popen, _MARK, None)
            if original is not None:
                cls._Popen = staticmethod(original)

    return Touch(name, "python", apply, private=True)


def hooked() -> Iterator[Any]:
    """The process classes whose start is hooked now."""
    return (cls for cls in HOOKED_PROCESSES if getattr(cls._Popen, _MARK, None) is not None)
