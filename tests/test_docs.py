"""The docstring examples of the public API run and print what they say."""

import doctest

import pytest

from pymc_jaxops import (
    _absorb as absorb,
)
from pymc_jaxops import (
    _plans as plans,
)
from pymc_jaxops import (
    _residuals as residuals,
)
from pymc_jaxops import (
    devices,
    multiprocess,
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
