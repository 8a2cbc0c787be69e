"""One x64 policy (precision.py): each computation runs in the precision its types say.

These tests switch JAX's global x64 off inside the test; conftest switches it back on.
The floatX=float32 end-to-end run (x64 off from the start) is in test_dtypes.py.
"""

import pickle
import warnings

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from pymc_jaxops import as_pytensor_op, model_to_jax
from pymc_jaxops.precision import X64Error


def tiny(x):
    return x * 1e-10  # 1e-10 in float64; 1.00000001e-10 in float32


def test_x64_is_on_after_import():
    assert jax.config.jax_enable_x64


def test_float64_graph_with_x64_off_runs_in_float64_and_leaves_the_switch():
    jax.config.update("jax_enable_x64", False)
    x = pt.dvector("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = as_pytensor_op(lambda x: jnp.sum(x) / 3)(x)
        got = out.eval({x: np.array([1.0, 1.0, 1e-17])})
    assert out.dtype == "float64"
    np.testing.assert_equal(got, (2.0 + 1e-17) / 3)
    assert not jax.config.jax_enable_x64


def test_x64_switched_off_after_a_run_keeps_float64():
    x = pt.dvector("x")
    fn = pytensor.function([x], as_pytensor_op(tiny)(x))
    assert fn(np.ones(1))[0] == 1e-10
    jax.config.update("jax_enable_x64", False)
    got = fn(np.ones(1))
    assert got.dtype == np.float64 and got[0] == 1e-10


def test_float32_graph_with_x64_off_stays_float32_when_x64_comes_on():
    jax.config.update("jax_enable_x64", False)
    x = pt.tensor("x", shape=(3,), dtype="float32")
    # jnp.ones defaults to float64 under x64: the Op keeps the mode it was traced in.
    out = as_pytensor_op(lambda x: x * 2.0 + jnp.ones(3))(x)
    assert out.dtype == "float32"
    fns = [pytensor.function([x], out, mode=m) for m in ("FAST_RUN", "JAX")]
    jax.config.update("jax_enable_x64", True)
    for fn in fns:
        got = fn(np.arange(3, dtype="float32"))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, [1.0, 3.0, 5.0])


def test_jax_mode_refuses_float64_with_x64_off_at_the_first_call():
    x = pt.dvector("x")
    fn = pytensor.function([x], as_pytensor_op(tiny)(x), mode="JAX")
    jax.config.update("jax_enable_x64", False)
    with pytest.raises(X64Error, match=r"(?s)'tiny'.*float64.*jax_enable_x64"):
        fn(np.ones(1))


def test_unpickled_op_runs_in_its_mode_where_x64_is_off():
    x = pt.dvector("x")
    op = as_pytensor_op(tiny)(x).owner.op
    jax.config.update("jax_enable_x64", False)
    clone = pickle.loads(cloudpickle.dumps(op))
    (got,) = clone.jitted(np.ones(1))
    assert got.dtype == np.float64 and got[0] == 1e-10


@pytest.fixture
def jax_model():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=[0.1, 3.2])
    return model, model_to_jax(model)


def test_model_to_jax_refuses_float64_with_x64_off(jax_model):
    model, _ = jax_model
    jax.config.update("jax_enable_x64", False)
    with pytest.raises(X64Error, match=r"The model computes in float64.*jax_enable_x64"):
        model_to_jax(model)


def test_existing_logdensity_refuses_when_x64_goes_off(jax_model):
    model, jm = jax_model
    params = {"mu": jnp.asarray(0.3)}
    want = model.compile_logp()({"mu": 0.3})
    np.testing.assert_allclose(jm.logdensity(params), want, rtol=1e-14)
    jax.config.update("jax_enable_x64", False)
    # JAX re-traces for the new mode; the check runs there, not only in model_to_jax.
    with pytest.raises(X64Error, match=r"JaxModel computes in float64"):
        jm.logdensity(params)
