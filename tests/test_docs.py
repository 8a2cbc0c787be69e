"""The docstring examples of the public API run and print what they say."""

import doctest

import pytest

from pymc_jaxops import (
    absorb,
    devices,
    multiprocess,
    plans,
    residuals,
    wrap,
)
from pymc_jaxops.to_jax import blackjax_nuts, model


@pytest.mark.parametrize(
    "module",
    [wrap, model, multiprocess, blackjax_nuts, residuals, plans, absorb, devices],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
