"""Every dtype PyTensor has, as inputs and outputs: values, gradients, Hessians, vmap, JAX mode.

References are JAX itself: the same function evaluated by JAX, and ``jax.vjp`` of it.
Each Op is built once per input dtype (module-scoped), on three-element arrays.
"""

import json
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_default_mode
from pytensor.gradient import NullTypeGradError
from pytensor.graph.replace import vectorize_graph

from pymc_jaxops import as_pytensor_op
from tests._subprocess import run_python

FLOATS = ["float16", "float32", "float64"]
INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
COMPLEX = ["complex64", "complex128"]
DTYPES = FLOATS + INTS + COMPLEX
# The C backend (pymc 5's default), Numba (pymc 6's default) and JAX.
MODES = ["CVM", "NUMBA", "JAX"]
# Numba has no float16 at all (PyTensor's Numba backend refuses it with or without our Op).
NO_FLOAT16 = {"NUMBA"}


def _mode_for(*dtypes):
    """The default mode, or the C backend where the default is Numba and a dtype is float16."""
    if "float16" in dtypes and get_default_mode().linker.__class__.__name__ == "NumbaLinker":
        return "CVM"
    return None


def _kernel(x, y, out_dtype):
    # Nonlinear in both inputs, and defined for every dtype (bool: and / or).
    return jnp.real(x * y + x).astype(out_dtype)


def _value(dtype, offset):
    base = np.array([0.5, 1.5, 2.5]) + offset
    if dtype == "bool":
        return np.array([True, False, True]) ^ bool(offset)
    if dtype.startswith("complex"):
        return (base + 1j * (base - 1)).astype(dtype)
    return base.astype(dtype)  # ints truncate: 0, 1, 2 (+ offset)


def _inputs(dtype):
    return pt.tensor("x", shape=(3,), dtype=dtype), pt.tensor("y", shape=(3,), dtype=dtype)


def _is_int(dtype):
    return dtype in INTS


@pytest.fixture(scope="module")
def row_values():
    """Per (input dtype, mode): all outputs of one Op returning every output dtype."""
    cache = {}

    def get(din, mode):
        if (din, mode) not in cache:
            x, y = _inputs(din)
            douts = [d for d in DTYPES if d != "float16" or mode not in NO_FLOAT16]
            outs = as_pytensor_op(lambda x, y: tuple(_kernel(x, y, d) for d in douts))(x, y)
            fn = pytensor.function([x, y], list(outs), mode=mode)
            cache[din, mode] = dict(zip(douts, fn(_value(din, 0), _value(din, 1)), strict=True))
        return cache[din, mode]

    return get


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dout", DTYPES)
@pytest.mark.parametrize("din", DTYPES)
def test_value_matches_jax(din, dout, mode, row_values):
    if mode in NO_FLOAT16 and "float16" in (din, dout):
        pytest.skip("Numba has no float16")
    got = row_values(din, mode)[dout]
    want = _kernel(_value(din, 0), _value(din, 1), dout)
    assert got.dtype == np.dtype(dout)
    np.testing.assert_array_equal(got, np.asarray(want))


def _jax_grads(din, dout, w):
    _, vjp = jax.vjp(lambda x, y: _kernel(x, y, dout), _value(din, 0), _value(din, 1))
    return [np.asarray(g) for g in vjp(jnp.asarray(w, dout))]


_TOL = {"float16": 2e-3, "float32": 1e-6}


@pytest.mark.parametrize("dout", DTYPES)
@pytest.mark.parametrize("din", FLOATS)
def test_gradient_matches_jax_vjp(din, dout):
    x, y = _inputs(din)
    out = as_pytensor_op(lambda x, y: _kernel(x, y, dout))(x, y)
    w = np.array([0.3, -1.2, 2.0])
    cost = pt.sum(pt.cast(out, "float64") * w) if not dout.startswith("complex") else None
    if dout.startswith("complex"):
        # Refused when the gradient graph is built (PyTensor itself has no complex grads).
        with pytest.raises((NotImplementedError, TypeError), match="complex"):
            pt.grad(pt.sum(pt.real(out) * w), [x, y])
        return
    if _is_int(dout):
        # Integer outputs are piecewise constant in the inputs: the gradient is exactly zero.
        grads = pt.grad(cost, [x, y], disconnected_inputs="ignore")
        fn = pytensor.function([x, y], grads, on_unused_input="ignore", mode=_mode_for(din, dout))
        for g in fn(_value(din, 0), _value(din, 1)):
            assert g.dtype == np.dtype(din)
            np.testing.assert_array_equal(g, 0)
        return
    grads = pt.grad(cost, [x, y])
    fn = pytensor.function([x, y], grads, mode=_mode_for(din, dout))
    got = fn(_value(din, 0), _value(din, 1))
    want = _jax_grads(din, dout, w)
    tol = max(_TOL.get(din, 1e-12), _TOL.get(dout, 1e-12))
    for g, r in zip(got, want, strict=True):
        assert g.dtype == np.dtype(din)
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("dout", FLOATS)
@pytest.mark.parametrize("din", FLOATS)
def test_gradient_in_jax_mode(din, dout):
    x, y = _inputs(din)
    out = as_pytensor_op(lambda x, y: _kernel(x, y, dout))(x, y)
    w = np.array([0.3, -1.2, 2.0])
    fn = pytensor.function([x, y], pt.grad(pt.sum(out * w), [x, y]), mode="JAX")
    got = fn(_value(din, 0), _value(din, 1))
    tol = max(_TOL.get(din, 1e-12), _TOL.get(dout, 1e-12))
    for g, r in zip(got, _jax_grads(din, dout, w.astype(dout)), strict=True):
        assert g.dtype == np.dtype(din)
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("din", INTS)
def test_integer_inputs_refuse_gradients(din):
    x, y = _inputs(din)
    out = as_pytensor_op(lambda x, y: _kernel(x, y, "float64"))(x, y)
    with pytest.raises(NullTypeGradError, match=rf"argument `x` is {din}"):
        pt.grad(out.sum(), x)


@pytest.mark.parametrize("din", COMPLEX)
def test_complex_inputs_refuse_gradients_but_others_get_theirs(din):
    z, a = pt.vector("z", dtype=din), pt.vector("a")
    out = as_pytensor_op(lambda z, a: jnp.sum(jnp.abs(z) * a**2))(z, a)
    with pytest.raises(NullTypeGradError, match=rf"argument `z` is {din}.*real and imag"):
        pt.grad(out, z)
    zv, av = np.array([3 + 4j, 1j], dtype=din), np.array([0.5, -2.0])
    np.testing.assert_allclose(
        pytensor.function([z, a], pt.grad(out, a))(zv, av), 2 * np.abs(zv) * av
    )


_HESS_TOL = {"float16": 5e-3, "float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("din", FLOATS)
def test_hessian_keeps_dtypes(din, mode):
    if mode in NO_FLOAT16 and din == "float16":
        pytest.skip("Numba has no float16")
    # PyTensor's JAX scan hands the value-and-grad Op a float64 cotangent for a float32
    # output: the Op casts it to what JAX expects.
    x = pt.tensor("x", shape=(3,), dtype=din)
    out = as_pytensor_op(lambda x: jnp.sum(jnp.sin(x) * x).astype("float32"))(x)
    h = pytensor.gradient.hessian(out, x)
    xv = _value(din, 0)
    got = pytensor.function([x], h, mode=mode)(xv)
    assert got.dtype == np.dtype(din)
    want = jax.hessian(lambda x: jnp.sum(jnp.sin(x) * x).astype("float32"))(xv)
    tol = max(_HESS_TOL[din], 1e-5)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("din", ["float16", "float32", "int32", "bool"])
def test_vectorized_op_keeps_dtypes(din):
    x, y = _inputs(din)
    out = as_pytensor_op(lambda x, y: _kernel(x, y, din))(x, y)
    xb = pt.tensor("xb", shape=(2, 3), dtype=din)
    batched = vectorize_graph(out, {x: xb})
    assert batched.dtype == din
    xv = np.stack([_value(din, 0), _value(din, 1)])
    got = pytensor.function([xb, y], batched, mode=_mode_for(din))(xv, _value(din, 1))
    want = jax.vmap(lambda x: _kernel(x, _value(din, 1), din))(xv)
    np.testing.assert_array_equal(got, np.asarray(want))


def _run_script(script: Path, env: dict[str, str], timeout: float) -> dict:
    """Run ``script`` as a user would (a file, a fresh interpreter), killing it on timeout."""
    proc = run_python([str(script)], timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


FLOAT32_MODEL = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, pymc as pm, pytensor, pytensor.tensor as pt
    from pymc_jaxops import as_pytensor_op

    @as_pytensor_op
    def line(a, b, x):
        return a + b * x + 0.0 * jnp.sum(x)  # a Python float constant must not upcast

    @as_pytensor_op
    def tiny(x):
        return x * 1e-10

    result = {"floatX": pytensor.config.floatX, "x64": bool(jax.config.jax_enable_x64)}
    # A float64 input under floatX=float32 is still computed in float64, switch untouched.
    d = pt.dvector("d")
    result["tiny"] = float(tiny(d).eval({d: np.ones(1)})[0])
    result["x64_after_tiny"] = bool(jax.config.jax_enable_x64)

    rng = np.random.default_rng(7)
    x = np.linspace(-2, 2, 60).astype("float32")
    y = (1.5 - 0.7 * x + rng.normal(0, 0.3, x.size)).astype("float32")
    with pm.Model() as model:
        a = pm.Normal("a", 0, 5)
        b = pm.Normal("b", 0, 5)
        sigma = pm.HalfNormal("sigma", 1)
        mu = line(a, b, x)
        pm.Normal("y", mu=mu, sigma=sigma, observed=y)
    result["mu"] = str(mu.dtype)
    result["dlogp"] = [str(v.dtype) for v in model.compile_dlogp()(model.initial_point())]
    result["ols"] = [float(c) for c in np.polyfit(x.astype("float64"), y, 1)[::-1]]
    kw = dict(draws=300, tune=300, chains=2, random_seed=11, progressbar=False,
              compute_convergence_checks=False)
    for sampler in ("pymc", "numpyro"):
        idata = pm.sample(model=model, nuts_sampler=sampler, cores=1, **kw)
        post = idata.posterior
        result[sampler] = {
            k: [str(post[k].dtype), float(post[k].mean()), float(post[k].std())]
            for k in ("a", "b", "sigma")
        }
    result["x64_end"] = bool(jax.config.jax_enable_x64)
    print(json.dumps(result))
    """
)


@pytest.mark.slow
def test_float32_model_samples_in_float32_with_pymc_and_numpyro(tmp_path):
    script = tmp_path / "float32_model.py"
    script.write_text(FLOAT32_MODEL)
    res = _run_script(script, {"PYTENSOR_FLAGS": "floatX=float32"}, timeout=400)
    assert res["floatX"] == "float32"
    # PyTensor switches x64 off for floatX=float32; pymc_jaxops never switches it back.
    assert res["x64"] is False and res["x64_after_tiny"] is False and res["x64_end"] is False
    assert res["tiny"] == 1e-10  # float32 would round 1 * 1e-10 to 1.00000001e-10
    assert res["mu"] == "float32" and set(res["dlogp"]) == {"float32"}
    for sampler in ("pymc", "numpyro"):
        draws = res[sampler]
        assert {dtype for dtype, _, _ in draws.values()} == {"float32"}, sampler
        # Posterior means within 4 posterior sds of the least-squares fit and the truth.
        for name, ols, truth in [("a", res["ols"][0], 1.5), ("b", res["ols"][1], -0.7)]:
            _, mean, sd = draws[name]
            assert abs(mean - ols) < 4 * sd and abs(mean - truth) < 4 * sd, (sampler, name)
        _, mean, sd = draws["sigma"]
        assert abs(mean - 0.3) < 4 * sd, sampler
