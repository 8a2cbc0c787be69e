"""What the sampler diagnostics mean, in one plain sentence each (shared by the examples)."""

from __future__ import annotations

import numpy as np


def explain(idata, sampler: str) -> str:
    """Divergences, r-hat and effective sample size of ``idata``, each with what it means.

    ``idata`` is ArviZ ``InferenceData`` whose ``sample_stats`` has ``diverging``; r-hat and
    effective sample size are the worst over every posterior variable.
    """
    import arviz as az

    diverging = idata.sample_stats["diverging"]
    n_div, n_draws = int(diverging.sum()), int(diverging.size)
    # Rounded as ArviZ's summary prints it, so the sentence and the table agree.
    rhat = round(float(az.rhat(idata).to_array().max()), 2)
    ess = float(az.ess(idata).to_array().min())
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
    if np.isfinite(rhat) and rhat <= 1.01:
        agree = f"r-hat {rhat:.2f} ≤ 1.01 for every parameter: {who} agree."
    else:
        agree = (
            f"r-hat {rhat:.2f} > 1.01: {who} disagree; run longer before trusting these numbers."
        )
    ess_line = (
        f"effective sample size ≥ {ess:.0f} for every parameter: means are known to about "
        f"±{1 / np.sqrt(max(ess, 1.0)):.2f} posterior standard deviations."
    )
    return "\n".join(f"{sampler}: {line}" for line in (div, agree, ess_line))
