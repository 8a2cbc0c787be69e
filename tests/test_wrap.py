"""The decorator: argument pytrees, static arguments, output pytrees, Op identity."""

import gc
import os
import weakref
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from pymc_jaxops import _jit as ops
from pymc_jaxops import as_pytensor_op, clear_caches, wrap
from pymc_jaxops._ops import JaxOp


class Params(NamedTuple):
    loc: jax.Array
    scale: jax.Array


@as_pytensor_op
def normal_logp(x, params: Params):
    z = (x - params.loc) / params.scale
    return jnp.sum(-0.5 * z**2 - jnp.log(params.scale) - 0.5 * jnp.log(2 * jnp.pi))


def test_value_matches_jax_reference(rng):
    x = rng.normal(size=5)
    loc, scale = pt.scalar("loc"), pt.scalar("scale")
    out = normal_logp(x, Params(loc, scale))
    got = out.eval({loc: 0.3, scale: 1.7})
    want = jax.scipy.stats.norm.logpdf(x, 0.3, 1.7).sum()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_decorator_with_name_and_kwargs(rng):
    @as_pytensor_op(name="affine")
    def affine(x, *, w, b=0.0):
        return w * x + b

    x, b = pt.vector("x"), pt.scalar("b")
    out = affine(x, w=2.0, b=b)
    assert "affine" in str(out.owner.op)
    f = pytensor.function([x, b], out)
    np.testing.assert_allclose(f(np.arange(3.0), 1.0), [1.0, 3.0, 5.0])


def test_pytree_in_and_out(rng):
    @as_pytensor_op
    def stats(data):
        x, w = data["x"], data["weights"][0]
        return {"mean": jnp.sum(w * x) / jnp.sum(w), "pair": (x * 2, jnp.max(x))}

    x, w = pt.vector("x"), pt.vector("w")
    out = stats({"x": x, "weights": [w]})
    assert set(out) == {"mean", "pair"}
    assert isinstance(out["pair"], tuple) and len(out["pair"]) == 2
    xv, wv = rng.normal(size=4), rng.uniform(1, 2, size=4)
    f = pytensor.function([x, w], [out["mean"], *out["pair"]])
    mean, doubled, mx = f(xv, wv)
    np.testing.assert_allclose(mean, np.sum(wv * xv) / wv.sum())
    np.testing.assert_allclose(doubled, 2 * xv)
    np.testing.assert_allclose(mx, xv.max())


def test_static_arguments_select_the_op(rng):
    @as_pytensor_op
    def reduce(x, how: str, power: int):
        return getattr(jnp, how)(x**power)

    x = pt.vector("x")
    a, b, c = reduce(x, "sum", 2), reduce(x, "max", 2), reduce(x, "sum", 2)
    assert a.owner.op is c.owner.op
    assert a.owner.op != b.owner.op
    xv = rng.normal(size=6)
    f = pytensor.function([x], [a, b])
    np.testing.assert_allclose(f(xv), [np.sum(xv**2), np.max(xv**2)])


def test_equal_calls_give_equal_ops_and_merge():
    x = pt.vector("x")
    loc = pt.scalar("loc")
    o1 = normal_logp(x, Params(loc, 1.0))
    o2 = normal_logp(x, Params(loc, 1.0))
    assert o1.owner.op == o2.owner.op and hash(o1.owner.op) == hash(o2.owner.op)
    f = pytensor.function([x, loc], o1 + o2)
    jax_nodes = [n for n in f.maker.fgraph.apply_nodes if isinstance(n.op, JaxOp)]
    assert len(jax_nodes) == 1


def test_python_int_is_static_and_float_is_an_input():
    @as_pytensor_op
    def f(x, n, s):
        return jnp.sum(x[:n]) * s

    x = pt.vector("x", shape=(5,))
    out = f(x, 3, 2.5)
    assert len(out.owner.inputs) == 2  # x and the float constant; n is static
    np.testing.assert_allclose(out.eval({x: np.ones(5)}), 7.5)


def test_numpy_arguments_become_constants(rng):
    data = rng.normal(size=(3, 2))
    out = as_pytensor_op(lambda d: jnp.linalg.norm(d))(data)
    np.testing.assert_allclose(out.eval(), np.linalg.norm(data))


@pytest.mark.parametrize(
    "fn, shapes",
    [
        (lambda x: jnp.sum(jnp.sin(x) * x), [(4,)]),  # scalar out
        (lambda x: jnp.cumsum(jnp.exp(x)), [(5,)]),  # vector out
        (lambda a, b: a @ b + jnp.tanh(a).sum(), [(3, 4), (4, 2)]),  # matrix out
        (lambda x: jnp.linalg.slogdet(x @ x.T + jnp.eye(3))[1], [(3, 3)]),
    ],
    ids=["scalar", "vector", "matrix", "slogdet"],
)
def test_verify_grad(fn, shapes, rng):
    op_fn = as_pytensor_op(fn)
    verify_grad(op_fn, [rng.normal(size=s) for s in shapes], rng=rng)


def test_verify_grad_pytree_static_and_kwargs(rng):
    @as_pytensor_op
    def f(tree, scale, *, mode="tanh"):
        act = getattr(jnp, mode)
        return {"a": act(tree["u"] * scale), "b": [jnp.sum(tree["v"] ** 3)]}

    def combined(u, v, scale):
        out = f({"u": u, "v": v}, scale, mode="sin")
        return out["a"].sum() * 0.5 + out["b"][0]

    verify_grad(combined, [rng.normal(size=3), rng.normal(size=2), np.array(1.3)], rng=rng)


def test_wraps_jitted_and_custom_vjp_functions(rng):
    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))
    jitted = jax.jit(lambda x: jnp.sum(softplus(x) ** 2))

    verify_grad(as_pytensor_op(jitted), [rng.normal(size=4)], rng=rng)
    verify_grad(as_pytensor_op(lambda x: jnp.sum(softplus(x))), [rng.normal(size=4)], rng=rng)


def test_float32_inputs_keep_their_dtype(rng):
    x = pt.vector("x", dtype="float32")
    out = as_pytensor_op(lambda x: jnp.sum(x**2))(x)
    assert out.dtype == "float32"
    xv = rng.normal(size=3).astype("float32")
    np.testing.assert_allclose(out.eval({x: xv}), np.sum(xv**2), rtol=1e-6)
    # Mixed with a float64 input, JAX promotes exactly like NumPy.
    y = pt.scalar("y")
    mixed = as_pytensor_op(lambda x, y: jnp.sum(x) * y)(x, y)
    assert mixed.dtype == "float64"


def test_op_cache_is_bounded_per_function():
    @as_pytensor_op
    def shift(x, k):  # k is static: one Op per value
        return x + k

    x = pt.vector("x")
    ops = [shift(x, k).owner.op for k in range(3 * wrap._OPS_PER_FUNCTION)]
    assert len(shift._ops) == wrap._OPS_PER_FUNCTION
    # An evicted Op is rebuilt equal, so graphs still merge.
    assert shift(x, 0).owner.op == ops[0]
    shift.cache_clear()
    assert not shift._ops


def test_functions_wrapped_in_a_loop_are_released():
    x = pt.dvector("x")
    released = []
    for k in range(20):

        def scaled(x, k=float(k)):  # a new function each time, as in a notebook loop
            return jnp.sum(x * k)

        with pm.Model():
            mu = pm.Normal("mu")
            pm.Potential("lik", as_pytensor_op(scaled)(x + mu))
        released.append(weakref.ref(scaled))
    del scaled, mu
    gc.collect()
    assert not [r for r in released if r() is not None]


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_many_compiled_models_keep_memory_bounded(monkeypatch):
    # PyTensor's rewriters keep every Op they have compiled; what an Op's function holds
    # in JAX (traces, XLA executables, ~1.6 MB here) must not stay with it.
    monkeypatch.setattr(ops, "_JIT_CACHE_SIZE", 4)
    data = np.linspace(-1, 1, 200)

    @as_pytensor_op
    def loglik(x, mu, k):  # k is static: each model gets its own Op
        return jnp.sum(jnp.tanh(x * k - mu) ** 2)

    rss = []
    for k in range(20):
        with pm.Model() as model:
            mu = pm.Normal("mu")
            pm.Potential("lik", -loglik(data, mu, k))
        # The C backend on both lines: Numba (pytensor 3's default) keeps the machine code
        # of every function it compiles, ours or not, which would hide what is ours.
        assert np.isfinite(model.compile_logp(mode="CVM")({"mu": 0.1}))
        gc.collect()
        rss.append(_rss_mb())
        assert len(ops._JIT_CACHE) <= 4 and len(loglik._ops) <= wrap._OPS_PER_FUNCTION
    growth = rss[-1] - rss[5]
    assert growth < 0.4 * 14, f"memory grew {growth:.1f} MB over the last 14 models"


def test_allow_eval_is_part_of_the_identity_and_pickles():
    import cloudpickle

    def double(x):
        return 2 * x

    strict, default = as_pytensor_op(double, allow_eval=False), as_pytensor_op(double)
    assert strict != default and strict == as_pytensor_op(jax_function=double, allow_eval=False)
    clone = cloudpickle.loads(cloudpickle.dumps(strict))
    assert clone._allow_eval is False  # a local function comes back as a new function


def test_clear_caches_empties_every_cache_the_package_keeps(rng):
    import pymc_jaxops._thread_start  # noqa: F401  (registers its cache on import)
    from pymc_jaxops import _caches
    from pymc_jaxops._thread_start import _DECISIONS

    x = pt.dvector("x")
    f = pytensor.function([x], normal_logp(x, Params(0.0, 1.0)))
    xv = rng.normal(size=3)
    f(xv)

    class Step:  # any weak-referenceable key stands for a step object
        pass

    step = Step()
    _DECISIONS[step] = True
    assert normal_logp._ops and ops._JIT_CACHE and _DECISIONS
    names = {
        "jitted JAX functions",
        "Ops per wrapped function",
        "chain-thread decisions",
        "absorbed graph functions",
        "Ops kept by PyTensor's rewriters",
    }
    assert names <= set(_caches.registered())
    clear_caches()
    assert not normal_logp._ops and not ops._JIT_CACHE and not _DECISIONS
    # Graphs built before keep working.
    np.testing.assert_allclose(f(xv), jax.scipy.stats.norm.logpdf(xv).sum())


class _Data(np.ndarray):
    """An array that can be weakly referenced (a plain ndarray cannot)."""


def test_dropped_models_release_their_wrapped_closures_after_clear_caches():
    # A loop over data sets, each closure holding its data: once the models and compiled
    # functions are dropped, clear_caches() lets every closure (and its data) go, including
    # the Ops PyTensor's rewriters keep in an unbounded cache of their own.
    def fit(i):
        data = (np.arange(40.0) + i).view(_Data)

        def loglik(mu):
            return -0.5 * jnp.sum((jnp.asarray(data) - mu) ** 2)

        with pm.Model() as model:
            mu = pm.Normal("mu")
            pm.Potential("lik", as_pytensor_op(loglik)(mu))
        fn = model.logp_dlogp_function(ravel_inputs=True)
        fn.set_extra_values({})
        value, _ = fn(np.zeros(1))
        assert value == pytest.approx(-0.5 * float(np.sum(data**2)) - 0.5 * np.log(2 * np.pi))
        return weakref.ref(data)

    refs = [fit(i) for i in range(8)]
    gc.collect()
    clear_caches()
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)
