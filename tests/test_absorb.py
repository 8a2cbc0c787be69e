"""The opt-in rewrite that runs a whole JAX-capable graph as one XLA call on the C backend."""

import pickle

import jax
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_default_mode

from pymc_jaxops import as_pytensor_op
from pymc_jaxops.absorb import TAG, XlaGraphOp
from tests.test_residuals import PASSES, _data, _model, _reference_logp

ABSORB = get_default_mode().including(TAG)
X = np.array([0.9, 1.1, np.log(0.3)])


def _ops(fn):
    return [type(n.op) for n in fn.maker.fgraph.apply_nodes]


def _logp_dlogp(model, mode):
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=mode)
    fn.set_extra_values({})
    return fn


def test_model_graph_becomes_one_xla_call_with_one_forward_and_backward(rng):
    data = _data(rng)
    fn = _logp_dlogp(_model(data), ABSORB)
    assert _ops(fn._pytensor_function) == [XlaGraphOp]
    fn(X)
    PASSES.update(forward=0, backward=0)
    value, grad = fn(X)
    assert PASSES == {"forward": 1, "backward": 1}
    want_value, want_grad = jax.value_and_grad(_reference_logp)(X, data)
    np.testing.assert_allclose(value, want_value, rtol=1e-8)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8)


def test_off_by_default_and_numbers_unchanged(rng):
    model = _model(_data(rng))
    plain, absorbed = _logp_dlogp(model, None), _logp_dlogp(model, ABSORB)
    assert XlaGraphOp not in _ops(plain._pytensor_function)
    for got, want in zip(absorbed(X), plain(X), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_untraceable_graph_falls_back_to_the_c_backend():
    # A reshape to a size known only at run time cannot be traced by jax.jit.
    x, n = pt.vector("x"), pt.lscalar("n")
    y = as_pytensor_op(lambda v: v * 2.0)(x)
    out = pt.sum(pt.exp(pt.reshape(y, (n, -1))) ** 2, axis=1)
    f = pytensor.function([x, n], out, mode=ABSORB)
    assert _ops(f) == [XlaGraphOp]
    xv = np.arange(6.0) / 10
    np.testing.assert_allclose(f(xv, 2), np.exp(2 * xv.reshape(2, 3)).__pow__(2).sum(1))
    (node,) = f.maker.fgraph.apply_nodes
    assert "_fallback" in node.op.__dict__


def test_absorbed_function_pickles(rng):
    fn = _logp_dlogp(_model(_data(rng)), ABSORB)._pytensor_function
    want = fn(X)
    for got, w in zip(pickle.loads(pickle.dumps(fn))(X), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-14)
