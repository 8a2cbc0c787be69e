import jax
import numpy as np
import pytest

import pymc_jaxops  # noqa: F401  (registrations; turns JAX x64 on)


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def _x64():
    # Some tests switch x64 off to check the guard; never leak that into the next test.
    yield
    jax.config.update("jax_enable_x64", True)
