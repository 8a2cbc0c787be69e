"""Vectorizing a graph with a JaxOp gives one jax.vmap-ed JaxOp, equal to the per-item loop."""

from __future__ import annotations

import pickle

import cloudpickle
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from pytensor.compile.mode import get_default_mode
from pytensor.graph.replace import vectorize_graph
from pytensor.graph.traversal import ancestors
from pytensor.tensor.blockwise import Blockwise

from examples.marginal_hmm import P_INITIAL, P_TRANSITION, hmm_logp_op, simulate
from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxOp

C_VM = get_default_mode().excluding("pymc_jaxops_absorb")  # to see the Ops the C VM runs

RNG = np.random.default_rng(7)


@as_pytensor_op
def gauss(x, mu, sigma):
    """Two outputs of different ranks: a scalar log density and a vector."""
    return jnp.sum(-0.5 * ((x - mu) / sigma) ** 2 - jnp.log(sigma)), x * mu


def _jax_nodes(fn):
    nodes = fn.maker.fgraph.apply_nodes
    loops = [n for n in nodes if isinstance(n.op, Blockwise) and isinstance(n.op.core_op, JaxOp)]
    assert not loops, "a Blockwise loop over the JaxOp is left"
    return [n for n in nodes if isinstance(n.op, JaxOp)]


def test_vectorize_graph_gives_one_vmapped_op_with_loop_values_and_grads():
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, scaled = gauss(x, mu, sigma)
    xb, mub = pt.matrix("xb"), pt.vector("mub")
    vlogp, vscaled = vectorize_graph([logp, scaled], {x: xb, mu: mub})
    assert vlogp.type.shape == (None,) and vscaled.type.shape == (None, None)
    grads = pt.grad(vlogp.sum(), [mub, sigma])
    outs = [vlogp, vscaled, *grads, vscaled.shape]
    fn = pytensor.function([xb, mub, sigma], outs, mode=C_VM)
    [node] = _jax_nodes(fn)  # forward and gradient fused into one call
    assert "vmap(gauss)" in str(node.op)

    X, MU = RNG.normal(size=(5, 3)), RNG.normal(size=5)
    got = fn(X, MU, 1.3)
    item = pytensor.function([x, mu, sigma], [logp, scaled, *pt.grad(logp, [mu, sigma])])
    loop = [item(X[i], MU[i], 1.3) for i in range(5)]
    np.testing.assert_allclose(got[0], [r[0] for r in loop], rtol=1e-12)
    np.testing.assert_allclose(got[1], [r[1] for r in loop], rtol=1e-12)
    np.testing.assert_allclose(got[2], [r[2] for r in loop], rtol=1e-12)
    np.testing.assert_allclose(got[3], sum(r[3] for r in loop), rtol=1e-12)  # shared sigma
    np.testing.assert_array_equal(got[4], [5, 3])


def test_two_batch_dims_and_static_broadcasting():
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, _ = gauss(x, mu, sigma)
    xb = pt.tensor("xb", shape=(1, 4, 3))  # broadcast along the first batch dim
    mub = pt.matrix("mub")
    out = vectorize_graph(logp, {x: xb, mu: mub})
    fn = pytensor.function([xb, mub, sigma], out)
    assert len(_jax_nodes(fn)) == 1
    X, MU = RNG.normal(size=(1, 4, 3)), RNG.normal(size=(2, 4))
    item = pytensor.function([x, mu, sigma], logp)
    expected = [[item(X[0, j], MU[i, j], 0.7) for j in range(4)] for i in range(2)]
    np.testing.assert_allclose(fn(X, MU, 0.7), expected, rtol=1e-12)


def test_pt_vectorize_on_the_hmm_matches_loop():
    emissions = simulate(n_sequences=6, n_steps=12)
    log_init, log_trans = np.log(P_INITIAL), np.log(P_TRANSITION)

    def hmm(signal, noise):
        return hmm_logp_op(emissions, signal, noise, log_init, log_trans)

    batched = pt.vectorize(hmm, signature="(),()->()")
    signal, noise = pt.vector("signal"), pt.vector("noise")
    out = batched(signal, noise)
    fn = pytensor.function([signal, noise], [out, pt.grad(out.sum(), signal)])
    [node] = _jax_nodes(fn)
    # The emissions stay one unbatched constant input: vmap's in_axes=None.
    assert node.inputs[0].type.shape == emissions.shape

    s, n = np.array([1.0, 1.15, 1.3]), np.array([0.1, 0.15, 0.2])
    value, grad = fn(s, n)
    s0, n0 = pt.scalar(), pt.scalar()
    one = hmm(s0, n0)
    item = pytensor.function([s0, n0], [one, pt.grad(one, s0)])
    loop = [item(a, b) for a, b in zip(s, n, strict=True)]
    np.testing.assert_allclose(value, [r[0] for r in loop], rtol=1e-12)
    np.testing.assert_allclose(grad, [r[1] for r in loop], rtol=1e-12)


def test_vectorize_over_posterior_keeps_one_op():
    emissions = simulate(n_sequences=5, n_steps=10)
    with pm.Model() as model:
        signal = pm.Normal("signal", 1, 1)
        noise = pm.HalfNormal("noise", 1)
        loglik = hmm_logp_op(emissions, signal, noise, np.log(P_INITIAL), np.log(P_TRANSITION))
        pm.Deterministic("loglik", loglik)
    # A posterior as both arviz lines hold it: an xarray Dataset over (chain, draw).
    posterior = xr.Dataset(
        {
            "signal": (("chain", "draw"), RNG.normal(1.15, 0.05, (2, 7))),
            "noise": (("chain", "draw"), RNG.uniform(0.1, 0.2, (2, 7))),
        }
    )
    from pymc.sampling.forward import vectorize_over_posterior

    [batched] = vectorize_over_posterior(
        [model["loglik"]], posterior=posterior, input_rvs=[signal, noise]
    )
    # All inputs are constants (the posterior draws), so compiling would fold the Op away:
    # look at the graph itself.
    ops = [v.owner.op for v in ancestors([batched]) if v.owner is not None]
    assert not [op for op in ops if isinstance(getattr(op, "core_op", None), JaxOp)]
    assert len({op for op in ops if isinstance(op, JaxOp)}) == 1
    got = batched.eval()
    assert got.shape == (2, 7)
    one = pytensor.function([signal, noise], model["loglik"])
    p = posterior
    expected = [
        [one(p.signal.values[c, d], p.noise.values[c, d]) for d in range(7)] for c in range(2)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_vmapped_op_is_a_value_pickles_and_runs_in_jax_mode():
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, _ = gauss(x, mu, sigma)
    xb, mub = pt.matrix("xb"), pt.vector("mub")
    a = vectorize_graph(logp, {x: xb, mu: mub})
    b = vectorize_graph(logp, {x: xb, mu: mub})
    assert a.owner.op == b.owner.op and hash(a.owner.op) == hash(b.owner.op)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        clone = pickle.loads(dumps(a.owner.op))
        assert clone == a.owner.op
    X, MU = RNG.normal(size=(3, 2)), RNG.normal(size=3)
    c_value = pytensor.function([xb, mub, sigma], [a, pt.grad(a.sum(), mub)])(X, MU, 2.0)
    j_value = pytensor.function([xb, mub, sigma], [a, pt.grad(a.sum(), mub)], mode="JAX")(
        X, MU, 2.0
    )
    for c, j in zip(c_value, j_value, strict=True):
        np.testing.assert_allclose(np.asarray(j), c, rtol=1e-12)


def test_unbatched_replacement_keeps_the_op():
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, _ = gauss(x, mu, sigma)
    out = vectorize_graph(logp, {mu: pt.scalar("mu2")})
    assert out.owner.op is logp.owner.op


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_vmapped_op_runs_in_c_and_numba_modes(mode):
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, _ = gauss(x, mu, sigma)
    mub = pt.vector("mub")
    out = vectorize_graph(logp, {mu: mub})
    fn = pytensor.function([x, mub, sigma], out, mode=mode)
    X = RNG.normal(size=3)
    expected = [float(np.sum(-0.5 * ((X - m) / 1.5) ** 2 - np.log(1.5))) for m in (0.0, 1.0)]
    np.testing.assert_allclose(fn(X, [0.0, 1.0], 1.5), expected, rtol=1e-12)


def test_vectorized_gradient_of_an_unbatched_input_is_per_item():
    # Vectorizing over x alone: the gradient w.r.t. the shared sigma stays one per item
    # (a value-and-grad of the vmapped function would sum it over the batch).
    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    logp, _ = gauss(x, mu, sigma)
    outs = [logp, *pt.grad(logp, [x, sigma])]
    xb = pt.matrix("xb")
    fn = pytensor.function([xb, mu, sigma], vectorize_graph(outs, {x: xb}))
    X = RNG.normal(size=(5, 3))
    got = fn(X, 0.2, 1.3)
    item = pytensor.function([x, mu, sigma], outs)
    loop = [item(X[i], 0.2, 1.3) for i in range(5)]
    for k in range(3):
        np.testing.assert_allclose(got[k], [r[k] for r in loop], rtol=1e-12)
