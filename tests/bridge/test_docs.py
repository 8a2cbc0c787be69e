"""The docstring examples of the bridge's public functions run and print what they say, and
docs/errors.md shows the bridge's messages as they are."""

import doctest
from pathlib import Path

import jax
import jax.numpy as jnp
import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.ops import wrap_py

from pymc_jaxops.bridge import (
    jaxify,
    numba_to_jax,
    op_fallback,
    register_jax_fallback,
    unregister_jax_fallback,
)


@pytest.mark.parametrize("module", [jaxify, op_fallback], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


@numba.njit
def halves(x):
    return 2.5 * x


@numba.njit
def imports_inside(x):
    import math

    return math.pi * x


@numba.njit
def logp(x):
    return -0.5 * np.sum(x * x)


@wrap_py(itypes=[pt.dvector], otypes=[pt.dvector])
def black_box(x):
    return np.cos(x)


def _without_fallback():
    unregister_jax_fallback()
    try:
        x = pt.dvector("x")
        pytensor.function([x], black_box(x), mode="JAX")
    finally:
        register_jax_fallback()


F64 = jax.ShapeDtypeStruct((), jnp.float64)
CASES = [
    lambda: numba_to_jax(3, F64),
    lambda: numba_to_jax(halves, jax.ShapeDtypeStruct((-1,), jnp.float64)),
    lambda: numba_to_jax(halves, lambda x: jax.ShapeDtypeStruct(x.shape, jnp.int64))(
        np.array([1.0, 2.0, 3.0])
    ),
    lambda: numba_to_jax(imports_inside, lambda x: x)(np.ones(2)),
    lambda: jax.grad(numba_to_jax(logp, F64))(np.ones(2)),
    _without_fallback,
]


@pytest.mark.parametrize("case", CASES)
def test_errors_md_shows_the_current_message(case):
    text = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    with pytest.raises(Exception) as info:
        case()
    first_line = f"{type(info.value).__name__}: {str(info.value).splitlines()[0]}"
    assert first_line in text
