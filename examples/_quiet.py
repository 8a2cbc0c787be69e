"""Silence the three messages every example run printed that say nothing about its results.

Each filter matches one message exactly, so anything else still shows. The library itself
installs no filters: in a user's own program these messages are theirs to judge.
"""

from __future__ import annotations

import logging
import warnings


class _DropFontWeightFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to find font weight" not in record.getMessage()


def quiet_known_noise() -> None:
    # PyTensor looks for a system BLAS the first time it rewrites a graph and warns when there
    # is none (pip installs bring none). It matters to PyTensor's C matrix products; in these
    # examples JAX does the linear algebra, so the warning changes nothing.
    warnings.filterwarnings(
        "ignore", message="PyTensor could not link to a BLAS installation", category=UserWarning
    )
    # pm.sample(nuts_sampler="numpyro") donates the raw draws to the jitted function that maps
    # them to the constrained space (pymc/sampling/jax.py, donate_samples=True); draws whose
    # constrained shape differs (a simplex gains an entry) cannot reuse their buffer, and XLA
    # says so. Nothing is lost but a copy.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    # ArviZ's plot_posterior asks for "semibold" text; matplotlib's bundled DejaVu Sans has no
    # such weight, so matplotlib logs that it uses bold instead.
    logging.getLogger("matplotlib.font_manager").addFilter(_DropFontWeightFallback())
