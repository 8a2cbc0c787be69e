"""x64: a float64 PyMC graph is never computed in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytensor.tensor as pt
import pytest

from pymc_jaxops import as_pytensor_op, precision


def test_x64_is_on_after_import():
    assert jax.config.jax_enable_x64


def test_float64_input_turns_x64_back_on_with_one_warning(monkeypatch):
    monkeypatch.setattr(precision, "_warned", False)
    jax.config.update("jax_enable_x64", False)
    x = pt.dvector("x")
    with pytest.warns(UserWarning, match="jax_enable_x64"):
        out = as_pytensor_op(lambda x: jnp.sum(x) / 3)(x)
    assert jax.config.jax_enable_x64
    assert out.dtype == "float64"
    np.testing.assert_equal(out.eval({x: np.array([1.0, 1.0, 1e-17])}), (2.0 + 1e-17) / 3)


def test_float32_graph_leaves_x64_alone(recwarn):
    jax.config.update("jax_enable_x64", False)
    out = as_pytensor_op(lambda x: x * 2)(pt.vector("x", dtype="float32"))
    assert out.dtype == "float32"
    assert not jax.config.jax_enable_x64
    assert not [w for w in recwarn if "x64" in str(w.message)]
