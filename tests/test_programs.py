"""Equal absorbed graphs share one program: a model built again compiles nothing."""

import jax
import numpy as np
import pymc as pm

from pymc_jaxops import _programs, as_pytensor_op
from pymc_jaxops._absorb import XlaGraphOp
from tests._compiles import Compiled
from tests.test_residuals import _data, _model, _reference_logp

X = np.array([0.9, 1.1, np.log(0.3)])


def _first_call(model):
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    (node,) = fn._pytensor_function.maker.fgraph.apply_nodes
    assert isinstance(node.op, XlaGraphOp)
    with Compiled() as compiled:
        value, grad = fn(X)
    return fn, node.op, compiled.names, value, grad


def test_the_same_model_built_again_compiles_nothing(rng):
    data = _data(rng)
    _programs.clear()
    _first, op, names, value, grad = _first_call(_model(data))
    assert len(names) == 1
    # pm.sample compiles the model again on each call; a notebook re-run builds it again.
    _again, op_again, names_again, value_again, grad_again = _first_call(_model(data))
    assert op_again is not op and names_again == []
    assert value_again == value and np.array_equal(grad_again, grad)
    want_value, want_grad = jax.value_and_grad(_reference_logp)(X, data)
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)


def test_the_same_model_after_its_functions_are_gone_compiles_nothing(rng):
    import gc

    data = _data(rng)
    _programs.clear()
    first = _first_call(_model(data))
    del first
    gc.collect()
    assert _first_call(_model(data))[2] == []


def test_a_model_with_other_data_compiles_its_own_program(rng):
    # Same structure, other observations: equal up to the constants, so not equal.
    data = _data(rng)
    other = data + 1.0
    _programs.clear()
    _first_call(_model(data))
    _, _, names, value, grad = _first_call(_model(other))
    assert len(names) == 1
    want_value, want_grad = jax.value_and_grad(_reference_logp)(X, other)
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)


def test_a_redefined_function_is_another_function(rng):
    # A notebook cell run again defines a new function object: it may close over other
    # values, so its graph is compiled again (and answers for its own values).
    data = _data(rng)

    def model_with(scale):
        @as_pytensor_op
        def scaled(theta):
            return scale * theta

        with pm.Model() as model:
            theta = pm.Normal("theta", 0.0, 1.0, shape=3)
            pm.Normal("y", mu=pm.math.sum(scaled(theta)), observed=data[:, 0])
        return model

    _programs.clear()
    values = []
    for scale in (1.0, 2.0):
        fn = model_with(scale).logp_dlogp_function(ravel_inputs=True)
        fn.set_extra_values({})
        with Compiled() as compiled:
            values.append(fn(X)[0])
        assert len(compiled.names) == 1
    mu = np.array([1.0, 2.0]) * X.sum()
    want = [
        -0.5 * np.sum(X**2)
        - np.sum((data[:, 0] - m) ** 2) / 2
        - (3 + data.shape[0]) * 0.5 * np.log(2 * np.pi)
        for m in mu
    ]
    np.testing.assert_allclose(values, want, rtol=1e-10)
