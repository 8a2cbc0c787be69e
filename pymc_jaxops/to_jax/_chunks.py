"""Run many MCMC steps as a host loop of compiled calls, each sized to last about half a second.

Between calls the host can honour Ctrl-C (keeping the steps done so far) and move a
progress bar; one call is one compiled program that takes its step count as an argument, so
any chunking compiles once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["CHUNK_SECONDS", "in_chunks"]

# Steps per call are chosen so one call takes about this long: short enough for Ctrl-C to
# answer soon and the progress bar to move, long enough that call overhead does not show.
CHUNK_SECONDS = 0.5


def in_chunks(
    total: int,
    run: Callable[[int, int], Any],
    *,
    most: int,
    log: logging.Logger,
    label: str,
    may_stop: bool = False,
) -> bool:
    """Run ``total`` steps as ``run(first, n)`` calls sized to last ``CHUNK_SECONDS``.

    Parameters
    ----------
    total : int
        Steps to run, at least 1.
    run : callable
        ``run(first, n)`` runs steps ``first .. first + n - 1``.
    most : int
        Most steps one call may take (the size of the call's output buffers).
    log : logging.Logger
        Gets a DEBUG record ``"<label> <done>/<total>"`` after each call; callers (and a
        test script) count steps by it.
    label : str
        The record's prefix, e.g. ``"sample_blackjax_nuts: draw"``.
    may_stop : bool
        Whether a KeyboardInterrupt after at least one call ends the loop (returning True)
        rather than propagating.

    Returns
    -------
    bool
        Whether a KeyboardInterrupt stopped the loop early.
    """
    # Every process of a jax.distributed run must make the same calls, so chunk sizes
    # cannot follow each process's own clock there.
    adaptive = jax.process_count() == 1
    # Adaptive: start with one step (the first call also compiles), then aim for the target,
    # growing at most 4x per call so a cheap chunk cannot be followed by a very long one.
    done, n = 0, 1 if adaptive else min(total, most)
    try:
        while done < total:
            n = min(n, total - done)
            t0 = time.perf_counter()
            run(done, n)
            elapsed = time.perf_counter() - t0
            done += n
            log.debug("%s %d/%d", label, done, total)
            if adaptive:
                target = n * CHUNK_SECONDS / max(elapsed, 1e-6)
                n = int(np.clip(target, 1, min(4 * n, most)))
    except KeyboardInterrupt:
        if may_stop and done > 0:
            return True
        raise
    return False
