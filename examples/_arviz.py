"""The ArviZ calls whose spelling differs between the two supported lines, in one place.

PyMC 5 comes with ArviZ 0.x (``InferenceData``, plots returning matplotlib axes); PyMC 6 with
ArviZ 1.x, which returns ``xarray.DataTree`` and whose plots (``arviz_plots``) return a
``PlotCollection``. Reading results (``idata.posterior["x"]``, ``az.summary``, ``az.rhat``,
``az.loo``) reads the same on both and stays in the examples; what does not is here.
"""

from __future__ import annotations

import arviz as az
import numpy as np

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1


def from_draws(posterior: dict, sample_stats: dict):
    """Draws of shape ``(chain, draw, ...)`` as ``InferenceData`` (0.x) or ``DataTree`` (1.x)."""
    if ARVIZ_1:
        return az.from_dict({"posterior": posterior, "sample_stats": sample_stats})
    return az.from_dict(posterior=posterior, sample_stats=sample_stats)


def hdi(idata, var_name: str, prob: float) -> np.ndarray:
    """Highest-density interval of ``var_name``: shape ``(*var_shape, 2)``, lower end first."""
    if ARVIZ_1:
        return az.hdi(idata, var_names=[var_name], prob=prob)[var_name].values
    return az.hdi(idata, var_names=[var_name], hdi_prob=prob)[var_name].values


def trace_figure(idata, var_names: list[str], truth: dict[str, float], figsize):
    """Marginal (left) and trace (right) of each scalar variable; grey lines at ``truth``."""
    if not ARVIZ_1:
        lines = [(name, {}, value) for name, value in truth.items()]
        return az.plot_trace(idata, var_names=var_names, lines=lines, figsize=figsize)[0, 0].figure
    pc = az.plot_trace_dist(idata, var_names=var_names, figure_kwargs={"figsize": figsize})
    # az.add_lines would draw every line vertically, across the draw axis of the trace too.
    for name, value in truth.items():
        pc.get_viz("plot", name, column="dist").axvline(value, color="0.5", ls="--")
        pc.get_viz("plot", name, column="trace").axhline(value, color="0.5", ls="--")
    return pc.get_viz("figure")


def posterior_figure(idata, var_names: list[str], truth: dict[str, float], digits: int):
    """Marginal posterior of each scalar variable with an orange line at ``truth``.

    ``digits`` significant figures in the printed estimates: a narrow posterior needs more
    than ArviZ's default to tell its estimates apart.
    """
    if not ARVIZ_1:
        ref_val = [truth[name] for name in var_names]
        axes = az.plot_posterior(idata, var_names=var_names, ref_val=ref_val, round_to=digits)
        return np.ravel(axes)[0].figure  # one variable: a single Axes, not an array
    pc = az.plot_dist(
        idata, var_names=var_names, visuals={"point_estimate_text": {"round_to": f"{digits}g"}}
    )
    for name in var_names:
        pc.get_viz("plot", name).axvline(truth[name], color="C1")
    return pc.get_viz("figure")


def forest_figure(idata, var_name: str, prob: float, figsize):
    """One row per element of ``var_name`` (the first at the top): mean and ``prob`` HDI.

    Returns the figure, the axes that hold the intervals and the height of each element's row
    (in the order of ``var_name``'s elements), for marks drawn on top.
    """
    if not ARVIZ_1:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=figsize)
        az.plot_forest(idata, var_names=[var_name], combined=True, hdi_prob=prob, ax=ax)
        return fig, ax, ax.get_yticks()[::-1]
    pc = az.plot_forest(
        idata,
        var_names=[var_name],
        combined=True,
        point_estimate="mean",
        ci_kind="hdi",
        ci_probs=(0.5, prob),
        figure_kwargs={"figsize": figsize},
    )
    points = pc.get_viz("point_estimate", var_name).values.ravel()
    rows = np.array([p.get_offsets()[0, 1] for p in points])
    return pc.get_viz("figure"), pc.get_viz("plot", var_name, column="forest"), rows
