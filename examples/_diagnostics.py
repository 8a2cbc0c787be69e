"""What the sampler diagnostics mean, in one plain sentence each (shared by the examples)."""

from __future__ import annotations

import math

import numpy as np

RHAT_OK = 1.01  # PyMC warns above this, so the sentence below must agree with that warning


def _extreme(stat, pick) -> float:
    """``pick`` (max or min) over every element of every variable of an ArviZ statistic.

    ``stat`` is an ``xarray.Dataset`` (ArviZ 0.x) or a ``DataTree`` node (ArviZ 1.x); both
    have ``data_vars``. NaN (a constant variable) says nothing about mixing and is skipped.
    """
    values = np.concatenate([np.ravel(v.values) for v in stat.data_vars.values()])
    values = values[np.isfinite(values)]
    return float(pick(values)) if values.size else math.nan


def format_against(value: float, threshold: float, decimals: int = 2) -> str:
    """``value`` with the fewest decimals (at least ``decimals``) that keep it on its side.

    1.0104 prints as "1.0104", not "1.01", so "1.0104 > 1.01" never reads as "1.01 > 1.01".
    """
    if not math.isfinite(value):
        return str(value)
    for d in range(decimals, 17):
        text = f"{value:.{d}f}"
        if (float(text) <= threshold) == (value <= threshold):
            return text
    return repr(value)


def explain(idata, sampler: str) -> str:
    """Divergences, r-hat and effective sample size of ``idata``, each with what it means.

    ``idata`` is ArviZ ``InferenceData`` (ArviZ 0.x) or ``DataTree`` (ArviZ 1.x) whose
    ``sample_stats`` has ``diverging``; r-hat and effective sample size are the worst over
    every posterior variable.
    """
    import arviz as az

    diverging = idata.sample_stats["diverging"]
    n_div, n_draws = int(diverging.sum()), int(diverging.size)
    # Unrounded: PyMC compares the exact value with 1.01, and a rounded 1.0104 would pass.
    rhat = _extreme(az.rhat(idata.posterior), np.max)
    ess = _extreme(az.ess(idata.posterior), np.min)
    n_chains = idata.posterior.sizes["chain"]
    if n_div == 0:
        div = f"0 divergences in {n_draws} draws: no sign that NUTS missed part of the posterior."
    else:
        div = (
            f"{n_div} divergences in {n_draws} draws: NUTS met curvature it could not follow, "
            "so parts of the posterior may be under-sampled; raise target_accept or "
            "reparametrise before trusting the tails."
        )
    # With one chain ArviZ compares its two halves (split r-hat).
    who = "the chains" if n_chains > 1 else "the two halves of the chain"
    shown = format_against(rhat, RHAT_OK)
    if not math.isfinite(rhat):
        agree = f"r-hat is undefined (constant or too few draws): {who} cannot be compared."
    elif rhat <= RHAT_OK:
        agree = f"r-hat {shown} ≤ {RHAT_OK} for every parameter: {who} agree."
    else:
        agree = f"r-hat {shown} > {RHAT_OK}: {who} disagree; run longer before trusting them."
    # Rounded down, so "≥" holds for the number printed.
    ess_shown = math.floor(ess) if math.isfinite(ess) else ess
    ess_line = (
        f"effective sample size ≥ {ess_shown} for every parameter: means are known to about "
        f"±{1 / np.sqrt(max(ess, 1.0)):.2f} posterior standard deviations."
    )
    return "\n".join(f"{sampler}: {line}" for line in (div, agree, ess_line))
