"""Shared helpers for the benchmarks: machine/version banner and interleaved timing."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version


def banner(title: str) -> None:
    packages = ["pymc", "pytensor", "jax", "jaxlib", "numpyro", "blackjax", "nutpie", "numba"]
    found = []
    for p in packages:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{p} {version(p)}")
    print(f"== {title}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print("versions: " + ", ".join(found))


def per_call_us(fns: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Per-call microseconds of each function: best of ``rounds``, rounds interleaved.

    Interleaving makes the contenders share whatever else the machine is doing; the best
    round is the least disturbed estimate of each one's own cost.
    """
    for f in fns.values():
        for _ in range(max(3, calls // 10)):
            f()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls * 1e6)
    return best
