"""Choose between two equivalent ways of running a gradient by timing both, once.

A value-and-grad of a JAX function can run as one fused XLA program (``jax.vjp`` and its
pullback together) or as a forward program that returns the VJP residuals followed by a
backward program that consumes them. Which is cheaper depends on the function: on a
``lax.scan`` HMM the split was measured faster than the fused call, on a diffrax ODE solve
(whose residuals are the solver's checkpoints) slower. Both give the same numbers, so the
Ops time both on their first evaluation at given input shapes and keep the faster.

Only functions slow enough for the difference to matter are timed (the first plan must
take at least :data:`MEASURE_ABOVE_S`): for cheap ones the extra compilation would cost
more than the measurement could save.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax

from pymc_jaxops import _config

__all__ = ["MEASURE_ABOVE_S", "fastest"]

MEASURE_ABOVE_S = 100e-6
"""Time the alternative plan only when the default one takes at least this long."""

_ROUNDS = 3


def _seconds(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    return time.perf_counter() - t0


def fastest(default: str, plans: dict[str, Callable[[], object]]) -> str:
    """The name of the fastest plan (each a zero-argument call running the whole plan).

    ``default`` runs first (compiling it) and is kept without timing the others when it is
    already cheaper than :data:`MEASURE_ABOVE_S`. Rounds are interleaved and the best of
    each is compared, so a busy machine disturbs both plans alike.

    Examples
    --------
    >>> import time
    >>> fastest("slow", {"slow": lambda: time.sleep(0.01), "quick": lambda: None})
    'quick'
    >>> fastest("cheap", {"cheap": lambda: None, "other": lambda: time.sleep(1)})
    'cheap'
    """
    run_default = plans[default]
    run_default()
    if not _config.time_plans() or _seconds(run_default) < MEASURE_ABOVE_S:
        return default
    for run in plans.values():
        run()  # compile
    best = dict.fromkeys(plans, float("inf"))
    for _ in range(_ROUNDS):
        for name, run in plans.items():
            best[name] = min(best[name], _seconds(run))
    return min(best, key=lambda name: best[name])
