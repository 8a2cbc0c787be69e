"""JaxOp / JaxValueAndGradOp: gradients, second order, integer inputs, pickling."""

import pickle
import textwrap

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import NullTypeGradError, hessian

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxValueAndGradOp
from tests import _subprocess


def _cubic(x, a):
    return jnp.sum(jnp.sin(x) * a * x**3)


def test_hessian_equals_jax_hessian(rng):
    x, a = pt.vector("x"), pt.scalar("a")
    h = pytensor.function([x, a], hessian(as_pytensor_op(_cubic)(x, a), x))
    xv = rng.normal(size=4)
    want = jax.hessian(_cubic)(xv, 0.7)
    np.testing.assert_allclose(h(xv, 0.7), want, rtol=1e-12, atol=1e-12)


def test_third_order_through_nested_value_and_grad(rng):
    x = pt.scalar("x")
    y = as_pytensor_op(lambda x: jnp.exp(jnp.sin(x)))(x)
    d3 = pytensor.function([x], pt.grad(pt.grad(pt.grad(y, x), x), x))
    want = jax.grad(jax.grad(jax.grad(lambda x: jnp.exp(jnp.sin(x)))))(0.4)
    np.testing.assert_allclose(d3(0.4), want, rtol=1e-12)


def test_integer_inputs_are_not_differentiated(rng):
    @as_pytensor_op
    def take(x, idx):
        return jnp.sum(x[idx] ** 2)

    x, idx = pt.vector("x"), pt.lvector("idx")
    out = take(x, idx)
    g = pt.grad(out, x)
    vg = [
        n
        for n in pytensor.graph.ancestors([g])
        if n.owner and isinstance(n.owner.op, JaxValueAndGradOp)
    ]
    assert vg and vg[0].owner.op.wrt_mask == (True, False)
    f = pytensor.function([x, idx], g)
    np.testing.assert_allclose(f(np.arange(4.0), np.array([1, 3, 3])), [0, 2, 0, 12])
    with pytest.raises(NullTypeGradError, match="cannot differentiate integer"):
        pt.grad(out, idx)


def test_gradient_of_one_output_of_several(rng):
    @as_pytensor_op
    def two(x):
        return jnp.sum(x**2), jnp.prod(x)

    x = pt.vector("x")
    _s, p = two(x)
    f = pytensor.function([x], pt.grad(p, x))
    xv = np.array([1.5, 2.0, -1.0])
    np.testing.assert_allclose(f(xv), [-2.0, -1.5, 3.0])


def test_op_pickles_and_rebuilds_its_jit():
    x = pt.vector("x")
    op = as_pytensor_op(_cubic)(x, 2.0).owner.op
    op.jitted  # noqa: B018  (build the process-local jit)
    clone = cloudpickle.loads(cloudpickle.dumps(op))
    assert "_jit" not in clone.__dict__
    assert clone == op
    np.testing.assert_allclose(clone.jitted(np.ones(2), 2.0)[0], op.jitted(np.ones(2), 2.0)[0])


_FRESH = textwrap.dedent(
    """
    import pickle, sys
    import cloudpickle
    import numpy as np
    with open(sys.argv[1], "rb") as payload:
        f = {loader}.loads(payload.read())
    res = f(*{args})
    res = res[0] if isinstance(res, list) else res
    print(repr(float(np.asarray(res))))
    """
)


def _in_fresh_process(payload: bytes, loader: str, args: str) -> float:
    code = _FRESH.format(loader=loader, args=args)
    out = _subprocess.run_python_with_payload(code, payload, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_compiled_function_plain_pickle_in_fresh_process():
    from examples.marginal_hmm import hmm_logp_op, simulate

    em = simulate(5, 8)
    signal, noise = pt.scalar("signal"), pt.scalar("noise")
    lp = pt.log(np.full(3, 1 / 3))
    out = hmm_logp_op(em, signal, noise, lp, pt.log(np.full((3, 3), 1 / 3)))
    f = pytensor.function([signal, noise], [out, *pt.grad(out, [signal, noise])])
    want = float(f(1.1, 0.2)[0])
    got = _in_fresh_process(pickle.dumps(f), "pickle", "(1.1, 0.2)")
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
def test_compiled_closure_cloudpickle_in_fresh_process():
    scale = 3.0

    @as_pytensor_op
    def local(x):  # a closure: not importable, so only cloudpickle can ship it
        return jnp.sum(jnp.log1p(x**2)) * scale

    x = pt.vector("x")
    f = pytensor.function([x], local(x))
    want = float(f(np.arange(3.0)))
    assert _in_fresh_process(cloudpickle.dumps(f), "cloudpickle", "(np.arange(3.0),)") == want


def test_plain_pickle_refuses_closures_clearly():
    @as_pytensor_op
    def local(x):
        return x * 2

    op = local(pt.vector("x")).owner.op
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(op)


@pytest.mark.slow
def test_compiled_pymc_logp_plain_pickle_in_fresh_process():
    from examples.marginal_hmm import build_model, simulate

    model = build_model(simulate(5, 8))
    logp = model.compile_logp()
    point = {k: np.asarray(v).tolist() for k, v in model.initial_point().items()}
    want = float(logp(point))
    assert _in_fresh_process(pickle.dumps(logp), "pickle", f"({point!r},)") == pytest.approx(
        want, rel=1e-12
    )


@pytest.mark.slow
def test_pymc_model_cloudpickle_in_fresh_process():
    # PyMC models refuse plain pickle upstream (a functools.partial inside PyMC); cloudpickle
    # ships the model with its wrapped JAX function.
    from examples.marginal_hmm import build_model, simulate

    model = build_model(simulate(5, 8))
    point = model.initial_point()
    want = float(model.compile_logp()(point))

    def evaluate():
        return model.compile_logp()(point)

    assert _in_fresh_process(cloudpickle.dumps(evaluate), "cloudpickle", "()") == pytest.approx(
        want, rel=1e-12
    )
