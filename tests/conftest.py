import os

import jax
import numpy as np
import pytest

import pymc_jaxops  # noqa: F401  (registrations; turns JAX x64 on)
from pymc_jaxops._config import XLA_CACHE


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def _x64():
    # Some tests switch x64 off to check the guard; never leak that into the next test.
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _xla_disk(tmp_path):
    # Each test (and the processes it starts) keeps its XLA executables in a folder of its
    # own: a test counting compilations must not load another test's program. (Not through
    # monkeypatch: a test's own fixtures that rely on undoing its monkeypatch first must
    # not find it created earlier, and so undone later, by this one.)
    before = os.environ.get(XLA_CACHE)
    os.environ[XLA_CACHE] = str(tmp_path / "xla")
    yield
    if before is None:
        os.environ.pop(XLA_CACHE, None)
    else:
        os.environ[XLA_CACHE] = before
