"""examples/_arviz.py draws the same plots from ArviZ 0.x (PyMC 5) and ArviZ 1.x (PyMC 6)."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from examples._arviz import forest_figure, from_draws, hdi, posterior_figure, trace_figure


@pytest.fixture
def idata(rng):
    beta = rng.normal(size=(2, 300, 4)) * 0.1 + np.array([3.0, -2.0, 0.0, 1.5])
    posterior = {"a": 1.15 + 0.001 * rng.normal(size=(2, 300)), "beta": beta}
    yield from_draws(posterior, {"diverging": np.zeros((2, 300), dtype=bool)})
    plt.close("all")


def test_from_draws_keeps_chains_draws_and_divergences(idata):
    assert dict(idata.posterior["beta"].sizes) == {"chain": 2, "draw": 300, "beta_dim_0": 4}
    assert int(idata.sample_stats["diverging"].sum()) == 0


def test_hdi_is_lower_then_upper_per_element(idata):
    interval = hdi(idata, "beta", prob=0.9)
    assert interval.shape == (4, 2)
    assert np.all(interval[:, 0] < interval[:, 1])
    np.testing.assert_allclose(interval.mean(axis=1), [3.0, -2.0, 0.0, 1.5], atol=0.05)


def test_trace_figure_draws_the_truth_on_marginal_and_trace(idata, tmp_path):
    fig = trace_figure(idata, ["a"], {"a": 1.15}, figsize=(8, 3))
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "trace.png")


def test_posterior_figure_marks_the_truth(idata, tmp_path):
    fig = posterior_figure(idata, ["a"], {"a": 1.15}, digits=4)
    assert fig.axes
    fig.savefig(tmp_path / "posterior.png")


def test_forest_rows_follow_the_elements_first_on_top(idata, tmp_path):
    fig, ax, rows = forest_figure(idata, "beta", prob=0.9, figsize=(6, 4))
    assert ax in fig.axes
    assert len(rows) == 4
    assert np.all(np.diff(rows) < 0)  # the first element is the highest row
    fig.savefig(tmp_path / "forest.png")
