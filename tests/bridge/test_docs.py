"""The docstring examples of the bridge's public functions run and print what they say."""

import doctest

import pytest

from pymc_jaxops.bridge import jaxify, op_fallback


@pytest.mark.parametrize("module", [jaxify, op_fallback], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
