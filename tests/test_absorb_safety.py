"""An absorbed graph answers what the C backend answers: the rule of ``absorb.py`` by Op family.

Each case is built as a user would, with a wrapped JAX function in the graph so that the
absorption can fire, compiled in a mode with the absorption on, and compared with the same
backend with it off: the same exception class where that raises, the same special values
(nan, ±inf) and the same numbers (rtol 1e-10) elsewhere. On the C backend that is the
promise itself; on the Numba backend a graph the rule leaves alone answers what PyTensor's
Numba backend answers (which differs from C in places: integer division by zero, the
incomplete beta function's tail, digamma's poles), and an absorbed graph what C answers.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.scalar.basic as ps
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pytensor.compile.builders import OpFromGraph
from pytensor.compile.mode import get_mode
from pytensor.link.numba.linker import NumbaLinker
from pytensor.tensor.elemwise import Elemwise

from pymc_jaxops import _absorb as absorb
from pymc_jaxops import _programs, as_pytensor_op
from pymc_jaxops._absorb import TAG, XlaGraphOp

identity = as_pytensor_op(lambda v: 1.0 * v)
C_OFF = get_mode("CVM").excluding(TAG)
MODES = {"default": None, "CVM": "CVM", "NUMBA": "NUMBA"}
LOGIT_03 = np.log(0.3 / 0.7)


def _off(mode):
    """The same backend with the absorption off."""
    return get_mode(mode).excluding(TAG)


def _on_numba(mode) -> bool:
    return isinstance(get_mode(mode).linker, NumbaLinker)


def _absorbed(fn) -> bool:
    fn = getattr(fn, "f", fn)  # PyMC's PointFunc wraps the compiled function
    fn = getattr(fn, "_pytensor_function", fn)  # and so does its ValueGradFunction
    return any(isinstance(n.op, XlaGraphOp) for n in fn.maker.fgraph.apply_nodes)


def _outcome(call):
    """What a call answers: its outputs as arrays, or the class of the exception it raises."""
    try:
        out = call()
    except Exception as error:
        return type(error)
    return [np.asarray(v) for v in (out if isinstance(out, list | tuple) else [out])]


def _assert_same(got, want):
    if isinstance(want, type) or isinstance(got, type):
        assert got is want
        return
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10)  # nan matches nan, inf its own sign


def _cost(x):
    """A float cost around the wrapped function: enough nodes for the absorption to fire."""
    return pt.sum(identity(x) ** 2) + pt.sum(pt.exp(x)) + pt.log(pt.sum(x**2))


# --- indexing ---------------------------------------------------------------------------


def _indexed_data_model():
    with pm.Model() as model:
        x = pm.Data("x", np.arange(5.0))
        mu = pm.Normal("mu")
        pm.Normal("y", mu=identity(mu) * x[3], sigma=1.0, observed=1.0)
    return model


@pytest.mark.parametrize("mode", MODES)
def test_constant_index_into_data_that_set_data_shortens_raises_index_error(mode):
    # JAX clamps x[3] of a 2-long x to x[1] (a silent -182.84); the C backend raises.
    model = _indexed_data_model()
    fn = model.compile_logp(mode=MODES[mode])
    want_fn = model.compile_logp(mode=_off(MODES[mode]))
    np.testing.assert_allclose(fn({"mu": 0.2}), want_fn({"mu": 0.2}), rtol=1e-10)
    with model:
        pm.set_data({"x": np.array([10.0, 20.0])})
    got = _outcome(lambda: fn({"mu": 1.0}))
    assert got is _outcome(lambda: want_fn({"mu": 1.0})) is IndexError
    assert not _absorbed(fn)


def test_constant_index_inside_a_fixed_length_is_absorbed_with_the_same_numbers():
    with pm.Model() as model:
        theta = pm.Normal("theta", size=3)
        pm.Normal("y", mu=identity(theta)[2] + identity(theta)[-3], observed=np.array([0.4, 1.1]))
    fn = model.logp_dlogp_function(ravel_inputs=True)
    want = model.logp_dlogp_function(ravel_inputs=True, mode=_off(None))
    fn.set_extra_values({})
    want.set_extra_values({})
    point = np.array([0.3, -0.2, 0.9])
    _assert_same(_outcome(lambda: fn(point)), _outcome(lambda: want(point)))
    assert _absorbed(fn)


# --- integer division -------------------------------------------------------------------

DIVISIONS = {"//": pt.floor_div, "%": pt.mod}


@pytest.mark.parametrize("name", DIVISIONS)
@pytest.mark.parametrize("mode", MODES)
def test_integer_division_by_zero_beside_a_wrapped_op_answers_as_its_backend(mode, name):
    x, k = pt.vector("x"), pt.lvector("k")
    out = _cost(x) + pt.sum(DIVISIONS[name](k, k - 1))
    fn = pytensor.function([x, k], out, mode=MODES[mode])
    want_fn = pytensor.function([x, k], out, mode=_off(MODES[mode]))
    args = (np.array([1.0, 2.0]), np.array([1, 2, 3]))  # k - 1 is zero for k = 1
    got, want = _outcome(lambda: fn(*args)), _outcome(lambda: want_fn(*args))
    _assert_same(got, want)
    if not _on_numba(MODES[mode]):  # PyTensor's Numba backend returns 0 instead
        assert want is ZeroDivisionError
    assert not _absorbed(fn)


@pytest.mark.parametrize("name", DIVISIONS)
def test_integer_division_by_a_nonzero_constant_is_absorbed(name):
    x, k = pt.vector("x"), pt.lvector("k")
    divisor = np.array([-3, -2, 2, 3])
    out = _cost(x) + pt.sum(DIVISIONS[name](k, divisor) * np.arange(1, 5))
    fn, want_fn = pytensor.function([x, k], out), pytensor.function([x, k], out, mode=_off(None))
    args = (np.array([1.0, 2.0]), np.array([-7, 0, 5, 8]))
    _assert_same(_outcome(lambda: fn(*args)), _outcome(lambda: want_fn(*args)))
    assert _absorbed(fn)


# --- linear algebra ---------------------------------------------------------------------


LINALG = {
    "inv": lambda a: pt.linalg.inv(a),
    "solve": lambda a: pt.linalg.solve(a, pt.ones_like(a[..., 0]), b_ndim=1),
    "cholesky": lambda a: pt.linalg.cholesky(a),
}


@pytest.mark.parametrize("batched", [False, True], ids=["matrix", "batch (Blockwise)"])
@pytest.mark.parametrize("name", LINALG)
@pytest.mark.parametrize("mode", MODES)
def test_linear_algebra_of_a_singular_matrix_answers_as_c(mode, name, batched):
    # C: inv raises LinAlgError, solve and cholesky give nan; JAX: ±inf, a partly finite factor.
    a = pt.tensor3("a") if batched else pt.matrix("a")
    outs = [pt.sum(pt.exp(identity(a))) + pt.log(pt.sum(a**2)), LINALG[name](identity(a))]
    fn = pytensor.function([a], outs, mode=MODES[mode])
    want_fn = pytensor.function([a], outs, mode=_off(MODES[mode]))
    tile = np.ones((2, 1, 1)) if batched else 1.0
    singular = np.array([[1.0, 2.0], [2.0, 4.0]]) * tile  # nor positive definite
    got, want = _outcome(lambda: fn(singular)), _outcome(lambda: want_fn(singular))
    _assert_same(got, want)
    if name == "inv" and not _on_numba(MODES[mode]):
        assert want is np.linalg.LinAlgError
    regular = np.array([[2.0, 0.5], [0.5, 3.0]]) * tile
    _assert_same(_outcome(lambda: fn(regular)), _outcome(lambda: want_fn(regular)))
    assert not _absorbed(fn)


# --- special functions ------------------------------------------------------------------


def _censored_binomial(observed):
    with pm.Model() as model:
        p = pm.Uniform("p", 0, 1)
        binomial = pm.Binomial.dist(n=10000, p=identity(p))
        pm.Censored("y", binomial, lower=None, upper=4000, observed=observed)
    return model


def _rows():
    """20 rows drawn with p = 0.38, the first three censored at the bound."""
    rows = np.minimum(np.random.default_rng(0).binomial(10000, 0.38, size=20), 4000)
    rows[:3] = 4000
    return rows


@pytest.mark.parametrize("mode", MODES)
def test_censored_binomial_tail_has_a_finite_logp_and_gradient(mode):
    # JAX's betainc rounds P(Y <= 4000 | p = 0.3) to exactly 1 (C's to 1 - 1e-16): log1mexp
    # of 0 is -inf and its gradient, times the zero weight logaddexp gives it, is nan.
    model = _censored_binomial(4000)
    point = {"p_interval__": LOGIT_03}
    logp = model.compile_logp(jacobian=False, mode=MODES[mode])
    dlogp = model.compile_dlogp(jacobian=False, mode=MODES[mode])
    want_logp = model.compile_logp(jacobian=False, mode=_off(MODES[mode]))
    want_dlogp = model.compile_dlogp(jacobian=False, mode=_off(MODES[mode]))
    got = _outcome(lambda: [logp(point), dlogp(point)])
    _assert_same(got, _outcome(lambda: [want_logp(point), want_dlogp(point)]))
    if not _on_numba(MODES[mode]):  # PyTensor's Numba betainc rounds as JAX's does
        np.testing.assert_allclose(got[0], -36.7368005696771, rtol=1e-10)
        assert np.all(np.isfinite(got[1]))
    assert not _absorbed(logp) and not _absorbed(dlogp)


@pytest.mark.parametrize("mode", ["default", "CVM"])
def test_censored_binomial_gradient_on_20_rows_is_finite_below_the_data(mode):
    if _on_numba(MODES[mode]):
        pytest.skip("the Numba backend's own betainc gives this nan, absorbed or not")
    model = _censored_binomial(_rows())
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=MODES[mode])
    want_fn = model.logp_dlogp_function(ravel_inputs=True, mode=C_OFF)
    fn.set_extra_values({})
    want_fn.set_extra_values({})
    for p in (0.05, 0.3, 0.38, 0.45):
        x = np.array([np.log(p / (1 - p))])
        got = _outcome(lambda x=x: fn(x))
        _assert_same(got, _outcome(lambda x=x: want_fn(x)))
        assert np.all(np.isfinite(np.concatenate([np.ravel(g) for g in got])))
    assert not _absorbed(fn)


@pytest.mark.filterwarnings("ignore:`find_MAP` will:FutureWarning")  # pymc 6's notices
@pytest.mark.parametrize("mode", ["CVM", C_OFF], ids=["absorption on", "absorption off"])
def test_find_map_on_the_censored_model_recovers_p(mode):
    # With the graph in XLA, the first L-BFGS step met a nan gradient and find_MAP
    # returned its start point, 0.5, without an error.
    model = _censored_binomial(_rows())
    with pytensor.config.change_flags(mode=get_mode(mode)), model:
        p = float(pm.find_MAP(progressbar=False)["p"])
    assert p == pytest.approx(0.38422, abs=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_dirichlet_with_a_negative_concentration_keeps_the_c_gradient(mode):
    # digamma(-1): +inf in PyTensor's C code, nan in JAX (jax.scipy.special.digamma).
    with pm.Model() as model:
        a = pm.Normal("a", size=3)
        pm.Dirichlet("d", a=identity(a), observed=np.array([0.2, 0.3, 0.5]))
    fn = model.logp_dlogp_function(ravel_inputs=True, mode=MODES[mode])
    want_fn = model.logp_dlogp_function(ravel_inputs=True, mode=_off(MODES[mode]))
    fn.set_extra_values({})
    want_fn.set_extra_values({})
    for point in ([-1.0, 1.0, 2.0], [0.7, 1.0, 2.0]):
        got = _outcome(lambda point=point: fn(np.array(point)))
        _assert_same(got, _outcome(lambda point=point: want_fn(np.array(point))))
    got = fn(np.array([-1.0, 1.0, 2.0]))
    if not _on_numba(MODES[mode]):  # PyTensor's Numba digamma is nan there, as JAX's
        assert got[0] == -np.inf and got[1][0] == -np.inf
    assert not _absorbed(fn)


FINITE = [0.0, -0.0, 1, -1, -2, 2, 0.5, -0.5, 3.7, 1e-10, 40, -40, 700, -700, 1e300, -1e300]
SPECIAL = np.array([*FINITE, 1e-300, np.inf, -np.inf, np.nan])  # poles, overflow, inf, nan


@pytest.mark.parametrize("cls", absorb._SAME_SPECIAL_VALUES, ids=lambda c: c.__name__)
def test_absorbed_special_functions_give_the_c_values_at_special_inputs(cls):
    x = pt.vector("x")
    out = Elemwise(cls(ps.upgrade_to_float))(x)
    c = pytensor.function([x], out, mode=C_OFF)(SPECIAL)
    jax_values = np.asarray(pytensor.function([x], out, mode="JAX")(SPECIAL))
    np.testing.assert_allclose(jax_values, c, rtol=1e-12)


@pytest.mark.parametrize(
    "case",
    [
        "float floor division",
        "integer power",
        "float to integer cast",
        "digamma",
        "integer division in an OpFromGraph",
    ],
)
def test_other_families_left_on_c_answer_as_c(case):
    x, k = pt.vector("x"), pt.lvector("k")
    values = np.array([np.inf, -np.inf, np.nan, 1e300, 2.5, -1.0])
    ints = np.array([2, -3, 7, 0, 3, 1])
    if case == "float floor division":
        extra = x // 2.0
    elif case == "integer power":
        extra = k ** (k - 4)
    elif case == "float to integer cast":
        extra = pt.cast(x, "int64")
    elif case == "digamma":
        extra = pt.psi(x)
    else:
        j = pt.lvector("j")
        extra = OpFromGraph([j], [j // (j - 1)], inline=False)(k)
    outs = [_cost(x), extra]
    fn = pytensor.function([x, k], outs, mode="CVM", on_unused_input="ignore")
    want_fn = pytensor.function([x, k], outs, mode=C_OFF, on_unused_input="ignore")
    _assert_same(_outcome(lambda: fn(values, ints)), _outcome(lambda: want_fn(values, ints)))
    assert not _absorbed(fn)


# --- integer elementwise ops, property-based --------------------------------------------

INT_OPS = {
    "//": (pt.floor_div, False),
    "%": (pt.mod, False),
    "**": (pt.pow, False),
    "<": (pt.lt, True),
    "<=": (pt.le, True),
    "==": (pt.eq, True),
    "!=": (pt.neq, True),
    ">": (pt.gt, True),
    ">=": (pt.ge, True),
    "max": (pt.maximum, True),
    "*": (pt.mul, True),
}
X = np.array([0.3, -1.2])


@functools.cache
def _int_fns(name):
    """The graph compiled with the absorption on and off (C backend)."""
    x, a, b = pt.vector("x"), pt.lvector("a"), pt.lvector("b")
    outs = [_cost(x), INT_OPS[name][0](a, b)]
    return pytensor.function([x, a, b], outs, mode="CVM"), pytensor.function(
        [x, a, b], outs, mode=C_OFF
    )


small_ints = arrays(np.int64, 6, elements=st.integers(-4, 4))


@pytest.mark.parametrize("name", INT_OPS)
@settings(max_examples=40, deadline=None)
@given(a=small_ints, b=small_ints)
def test_integer_elementwise_ops_answer_as_c(name, a, b):
    fn, want_fn = _int_fns(name)
    got, want = _outcome(lambda: fn(X, a, b)), _outcome(lambda: want_fn(X, a, b))
    if isinstance(want, list):
        assert got[1].dtype == want[1].dtype
        np.testing.assert_array_equal(got[1], want[1])
    _assert_same(got, want)
    assert _absorbed(fn) is INT_OPS[name][1]


@functools.cache
def _floor_div_by_constant():
    x, a = pt.vector("x"), pt.lvector("a")
    outs = [_cost(x), a // np.array([-3, -2, -1, 1, 2, 3]), a % np.array([-3, -2, -1, 1, 2, 3])]
    return pytensor.function([x, a], outs), pytensor.function([x, a], outs, mode=C_OFF)


@settings(max_examples=60, deadline=None)
@given(a=arrays(np.int64, 6, elements=st.integers(-(2**62), 2**62)))
def test_integer_division_by_nonzero_constants_is_absorbed_and_exact(a):
    fn, want_fn = _floor_div_by_constant()
    got, want = fn(X, a), want_fn(X, a)
    for g, w in zip(got[1:], want[1:], strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    assert _absorbed(fn)


# --- caches -----------------------------------------------------------------------------


def test_clear_cache_forgets_graph_functions_and_absorbed_ops_keep_working():
    x = pt.vector("x")
    fn = pytensor.function([x], [_cost(x), pt.grad(_cost(x), x)])
    value = np.array([0.4, -0.8])
    want = fn(value)
    assert _absorbed(fn) and len(_programs._GRAPH_FNS) > 0
    _programs.clear()
    assert len(_programs._GRAPH_FNS) == 0
    for g, w in zip(fn(value), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-14)
    assert float(want[0]) == pytest.approx(
        float(np.sum(value**2) + np.sum(np.exp(value)) + np.log(np.sum(value**2))), rel=1e-12
    )


def test_a_wrapped_function_without_the_rule_families_is_still_absorbed():
    x = pt.vector("x")
    y = as_pytensor_op(lambda v: jnp.sin(v))(x)
    cost = pt.sum(pt.softplus(y)) + pt.sum(pt.erfc(pt.sigmoid(x))) + pt.max(x % 0.7)
    fn = pytensor.function([x], [cost, pt.grad(cost, x)])
    want_fn = pytensor.function([x], [cost, pt.grad(cost, x)], mode=C_OFF)
    value = np.array([0.3, -1.1, 2.0])
    _assert_same(_outcome(lambda: fn(value)), _outcome(lambda: want_fn(value)))
    assert _absorbed(fn)
