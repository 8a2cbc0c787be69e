"""The sentences of ``examples/_diagnostics.explain`` agree with PyMC's own r-hat warning."""

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr

from examples._arviz import from_draws
from examples._diagnostics import RHAT_OK, explain, format_against


def _idata(rng, shift: float = 0.0, chains: int = 2, draws: int = 400, n_div: int = 0):
    x = rng.normal(size=(chains, draws))
    x[-1] += shift  # one chain off-centre: r-hat above 1
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.flat[:n_div] = True
    return from_draws({"x": x, "y": rng.normal(size=(chains, draws, 3))}, {"diverging": diverging})


def _line(text: str, word: str) -> str:
    return next(line for line in text.splitlines() if word in line)


def _printed_rhat(line: str) -> float:
    return float(line.split("r-hat ", 1)[1].split()[0])


@pytest.mark.parametrize("rhat", [1.0104, 1.0101, 1.01000001])
def test_rhat_just_above_threshold_is_not_called_agreement(monkeypatch, rng, rhat):
    # Rounded to two decimals each of these printed "r-hat 1.01 ≤ 1.01: the chains agree",
    # right after PyMC's warning that r-hat is above 1.01.
    monkeypatch.setattr(az, "rhat", lambda data, **kw: xr.Dataset({"x": rhat}))
    line = _line(explain(_idata(rng), "NUTS"), "r-hat")
    assert "disagree" in line, line
    assert " agree" not in line, line
    assert _printed_rhat(line) > RHAT_OK, line


@pytest.mark.parametrize("rhat", [1.0, 1.0096, 1.01])
def test_rhat_at_or_below_threshold_is_agreement(monkeypatch, rng, rhat):
    monkeypatch.setattr(az, "rhat", lambda data, **kw: xr.Dataset({"x": rhat}))
    line = _line(explain(_idata(rng), "NUTS"), "r-hat")
    assert "agree" in line and "disagree" not in line, line
    assert _printed_rhat(line) <= RHAT_OK, line


def test_worst_rhat_over_every_variable_and_element(monkeypatch, rng):
    stat = xr.Dataset({"x": 1.0, "y": ("k", [1.0, 1.02, np.nan])})
    monkeypatch.setattr(az, "rhat", lambda data, **kw: stat)
    line = _line(explain(_idata(rng), "NUTS"), "r-hat")
    assert "r-hat 1.02 > 1.01" in line, line


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1, 0.15, 0.2, 0.3])
def test_verdict_and_printed_value_follow_arviz_rhat(rng, shift):
    idata = _idata(rng, shift)
    worst = max(float(v.max()) for v in az.rhat(idata.posterior).data_vars.values())
    line = _line(explain(idata, "NUTS"), "r-hat")
    assert ("disagree" in line) == (worst > RHAT_OK), (worst, line)
    assert (_printed_rhat(line) > RHAT_OK) == (worst > RHAT_OK), (worst, line)
    assert abs(_printed_rhat(line) - worst) < 0.005


def test_ess_bound_holds_for_the_number_printed(rng):
    idata = _idata(rng, 0.1)
    worst = min(float(v.min()) for v in az.ess(idata.posterior).data_vars.values())
    line = _line(explain(idata, "NUTS"), "effective sample size")
    printed = int(line.split("≥ ", 1)[1].split()[0])
    assert printed <= worst < printed + 1, (worst, line)


def test_divergences_and_single_chain(rng):
    text = explain(_idata(rng, chains=1, n_div=3), "NUTS")
    assert "3 divergences in 400 draws" in text
    assert "the two halves of the chain" in text


@pytest.mark.parametrize(
    "value",
    [0.99, 1.0, 1.004, 1.005, 1.0096, 1.01, 1.0100001, 1.0104, 1.0149, 1.015, 1.2, math.nan],
)
def test_format_against_keeps_the_printed_value_on_its_side(value):
    text = format_against(value, RHAT_OK)
    if math.isnan(value):
        assert text == "nan"
        return
    assert (float(text) <= RHAT_OK) == (value <= RHAT_OK), text
    assert len(text.split(".")[1]) >= 2


def test_rhat_that_cannot_be_computed_is_neither_agreement_nor_disagreement(monkeypatch, rng):
    monkeypatch.setattr(az, "rhat", lambda data, **kw: xr.Dataset({"x": np.nan}))
    line = _line(explain(_idata(rng), "NUTS"), "r-hat")
    assert "undefined" in line and "agree" not in line, line
