"""The upstream layer: every registration and patch applied by install(), undone by
uninstall(), and left out (with a warning) for library versions it was not verified with."""

import multiprocessing.context
import warnings

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from pymc_jaxops import _upstream, as_pytensor_op
from pymc_jaxops import multiprocess as mp
from pymc_jaxops._absorb import XlaGraphOp
from pymc_jaxops._upstream import _touches, versions


@as_pytensor_op
def _square_sum(x):
    return jnp.sum(x**2)


def _compiled(mode=None):
    x = pt.dvector("x")
    cost = _square_sum(pt.exp(x) + 1.0) * 2.0 + pt.sum(pt.log1p(x**2))
    return pytensor.function([x], [cost, pt.grad(cost, x)], mode=mode)


def _absorbed(fn) -> bool:
    return any(isinstance(n.op, XlaGraphOp) for n in fn.maker.fgraph.apply_nodes)


@pytest.fixture
def reinstalled():
    # Requested before monkeypatch, so it puts everything back after monkeypatch has.
    yield
    _touches.uninstall()
    _upstream.install()
    assert _upstream.installed()


def test_import_installs_everything():
    assert _upstream.installed()
    assert _upstream.skipped() == {}
    assert mp.installed()


def test_uninstall_gives_the_libraries_back_and_install_restores_them(reinstalled):
    x = np.array([0.1, -0.2])
    before = _compiled()
    assert _absorbed(before) or pytensor.config.linker != "cvm"
    expected = [np.asarray(v) for v in before(x)]

    _upstream.uninstall()
    assert not _upstream.installed()
    assert not mp.installed()
    assert not hasattr(multiprocessing.context.ForkProcess._Popen, "_pymc_jaxops_original")
    # No JAX conversion of our Op any more: JAX mode refuses the graph.
    with pytest.raises(NotImplementedError):
        _compiled(mode="JAX")
    # The default backend no longer absorbs it (and still computes the same numbers).
    plain = _compiled()
    assert not _absorbed(plain)
    np.testing.assert_allclose(plain(x)[0], expected[0], rtol=1e-12)

    _upstream.install()
    assert _upstream.installed()
    assert hasattr(multiprocessing.context.ForkProcess._Popen, "_pymc_jaxops_original")
    got = _compiled(mode="JAX")(x)
    np.testing.assert_allclose(np.asarray(got[1]), expected[1], rtol=1e-12)


def test_an_unverified_library_skips_its_private_touches_with_a_warning(reinstalled, monkeypatch):
    _upstream.uninstall()
    monkeypatch.setitem(versions.VERIFIED, "pymc", ((99, 0),))
    monkeypatch.setitem(versions.VERIFIED, "pytensor", ((99, 0),))
    with pytest.warns(RuntimeWarning, match=r"pytensor vectorize of JaxOp \(skipped: pytensor"):
        _upstream.install()
    skipped = _upstream.skipped()
    assert "pytensor vectorize of JaxOp" in skipped
    assert "is not 99.0.x" in skipped["pytensor vectorize of JaxOp"]
    # Public registrations still apply: the Op converts to JAX, graphs still absorb.
    assert _touches.installed("pytensor jax dispatch of JaxOp")
    assert not _upstream.installed()


def test_unverified_apply_applies_them_anyway(reinstalled, monkeypatch):
    _upstream.uninstall()
    monkeypatch.setitem(versions.VERIFIED, "pytensor", ((99, 0),))
    monkeypatch.setenv("PYMC_JAXOPS_UNVERIFIED", "apply")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _upstream.install()
    assert _upstream.installed()


def test_a_touch_whose_private_name_moved_fails_closed(reinstalled):
    calls = []

    def moved():
        calls.append(1)
        raise AttributeError("module 'pymc.sampling.parallel' has no attribute '_run_process'")

    touch = _upstream.Touch("test: a name that moved", "pymc", moved, private=True)
    with pytest.warns(RuntimeWarning, match="a name that moved"):
        _upstream.declare(touch)  # applied at once: install() already ran
    assert calls and not _touches.installed("test: a name that moved")
    assert "AttributeError" in _upstream.skipped()["test: a name that moved"]
    _touches._DECLARED.pop("test: a name that moved")
    _touches._SKIPPED.pop("test: a name that moved")


def test_line_matches_the_installed_pymc():
    import pymc

    major = int(pymc.__version__.split(".")[0])
    assert ("pymc6" if major >= 6 else "pymc5") == _upstream.LINE
    assert versions.unverified() == {}
