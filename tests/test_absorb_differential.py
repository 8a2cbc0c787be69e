"""Differential harness: the absorption never changes an answer of a PyMC distribution silently.

Issue 20. For every distribution PyMC exports (``continuous``, ``discrete`` and
``multivariate``'s ``__all__``, plus ``Censored``, ``Truncated`` and ``Mixture``), the
harness builds ``pm.logp``, ``pm.logcdf`` and ``pm.logccdf`` (where PyMC implements them) at
points inside the support, on its boundary, outside it and at ±inf/nan, with every parameter
passed through a wrapped JAX identity so that the absorption (``pymc_jaxops/_absorb.py``) can
fire. Each graph and its gradient (w.r.t. the float parameters and a float value) is
compiled once with the absorption on and once with it off, on the C backend (``"CVM"``) and,
on pytensor 3 whose default linker is Numba, on the Numba backend too; the point is an input,
so one pair of functions serves every point. Both must answer the same: the same exception
class, nan where nan, the same infinities, the same numbers to rtol 1e-10. A hand-written
test can only check the cases someone thought of; this table fails as soon as PyMC adds a
distribution it does not cover, and as soon as a rule change lets a graph into XLA that
answers otherwise. The module also counts how many cases were absorbed at all (a rule that
absorbs nothing would pass every comparison) and prints the tally at the end.

Property tests (hypothesis) then check elementwise float Ops and integer Ops (``//``, ``%``,
``**``, comparisons, casts) beside a wrapped Op, absorbed against the C backend.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymc.distributions import continuous, discrete, multivariate
from pytensor.compile.mode import Mode, get_mode
from pytensor.gradient import NullTypeGradError
from pytensor.link.basic import PerformLinker

from pymc_jaxops import _absorb as absorb
from pymc_jaxops import as_pytensor_op
from pymc_jaxops._absorb import TAG, XlaGraphOp
from tests.test_absorb_safety import C_OFF, _absorbed, _assert_same, _on_numba, _outcome, identity

# Integer parameters (Binomial's n, DiscreteUniform's bounds) keep their dtype through it.
int_identity = as_pytensor_op(lambda v: v * 1)

# pytensor 3 (pymc 6) links with Numba by default: check that backend there as well; on
# pytensor 2 the default mode is the C backend, which "CVM" already is.
BACKENDS = ["CVM", *(["NUMBA"] if _on_numba(None) else [])]
OFF = {"CVM": C_OFF, "NUMBA": get_mode("NUMBA").excluding(TAG)}
METHODS = {"logp": pm.logp, "logcdf": pm.logcdf, "logccdf": pm.logccdf}
RTOL = 1e-10

# --- the table --------------------------------------------------------------------------

SPECIAL = [np.inf, -np.inf, np.nan]
REAL = [0.3, -2.5, 8.0, -40.0, 40.0, 1e20, -1e20, *SPECIAL]
POSITIVE = [0.5, 0.0, 1e-12, 30.0, 1e3, -1.0, *SPECIAL]
UNIT = [0.3, 0.0, 1.0, 1e-12, 1 - 1e-12, -0.5, 1.5, *SPECIAL]
COUNTS = [0, 4, 1, -1, 1000]


@dataclasses.dataclass(frozen=True)
class Case:
    """One distribution: its parameters (inputs of the graph), its points, how it is built.

    ``build(params)`` gets the parameters as symbolic variables, each already passed through
    the wrapped identity; ``fixed`` holds keyword arguments that must stay Python or NumPy
    values (shapes, component counts, splines computed at build time).
    """

    params: dict[str, Any]
    points: list[Any]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    build: Callable[..., Any] | None = None
    discrete: bool = False


def _c(params, points, **fixed):
    return Case({k: np.asarray(v, dtype=_dtype(v)) for k, v in params.items()}, points, fixed)


def _d(params, points, **fixed):
    return dataclasses.replace(_c(params, points, **fixed), discrete=True)


def _dtype(v):
    return np.int64 if np.asarray(v).dtype.kind in "iub" else np.float64


def _built(build, params, points, discrete_=False):
    case = _c(params, points)
    return dataclasses.replace(case, build=build, discrete=discrete_)


W3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float64)  # a path graph
COV2 = np.array([[1.5, 0.4], [0.4, 0.8]])
SIMPLEX3 = [[0.2, 0.3, 0.5], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [1.2, -0.1, -0.1], [0.2] * 3]
COUNTS3 = [[1, 2, 2], [5, 0, 0], [1, 1, 1], [-1, 3, 3], [6, 0, 0]]
CORR3 = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])
NOT_CORR3 = np.array([[1.0, 0.99, 0.99], [0.99, 1.0, -0.99], [0.99, -0.99, 1.0]])  # not PD

CASES: dict[str, Case] = {
    # continuous
    "AsymmetricLaplace": _c(dict(b=1.5, kappa=0.8, mu=0.3), REAL),
    "Beta": _c(dict(alpha=2.0, beta=3.5), UNIT),
    "Cauchy": _c(dict(alpha=0.5, beta=2.0), REAL),
    "ChiSquared": _c(dict(nu=3.0), POSITIVE),
    "ExGaussian": _c(dict(mu=0.5, sigma=1.0, nu=0.7), REAL),
    "Exponential": _c(dict(lam=1.5), POSITIVE),
    "Flat": _c({}, REAL),
    "Gamma": _c(dict(alpha=2.0, beta=1.5), POSITIVE),
    "Gumbel": _c(dict(mu=0.5, beta=2.0), REAL),
    "HalfCauchy": _c(dict(beta=1.5), POSITIVE),
    "HalfFlat": _c({}, POSITIVE),
    "HalfNormal": _c(dict(sigma=1.5), POSITIVE),
    "HalfStudentT": _c(dict(nu=3.0, sigma=1.5), POSITIVE),
    # Its spline is computed in NumPy when the distribution is built: constants.
    "Interpolated": _c(
        {},
        [1.3, 0.0, 4.0, -1.0, 5.0, *SPECIAL],
        x_points=np.linspace(0.0, 4.0, 9),
        pdf_points=np.array([0.0, 1, 2, 3, 4, 3, 2, 1, 0]),
    ),
    "InverseGamma": _c(dict(alpha=3.0, beta=2.0), POSITIVE),
    "Kumaraswamy": _c(dict(a=2.0, b=3.0), UNIT),
    "Laplace": _c(dict(mu=0.2, b=1.3), REAL),
    "LogNormal": _c(dict(mu=0.3, sigma=0.8), POSITIVE),
    "Logistic": _c(dict(mu=0.2, s=1.3), REAL),
    "LogitNormal": _c(dict(mu=0.3, sigma=0.9), UNIT),
    "Moyal": _c(dict(mu=0.2, sigma=1.1), REAL),
    "Normal": _c(dict(mu=0.2, sigma=1.3), REAL),
    "Pareto": _c(dict(alpha=3.0, m=0.5), [1.0, 0.5, 0.4999, 1e3, 0.0, -1.0, *SPECIAL]),
    "PolyaGamma": _c(dict(h=1.0, z=0.5), POSITIVE),
    "Rice": _c(dict(nu=1.0, sigma=1.5), POSITIVE),
    "SkewNormal": _c(dict(mu=0.2, sigma=1.3, alpha=2.0), REAL),
    "SkewStudentT": _c(dict(mu=0.2, sigma=1.3, a=2.0, b=3.0), REAL),
    "StudentT": _c(dict(nu=4.0, mu=0.2, sigma=1.3), REAL),
    "Triangular": _c(dict(lower=0.0, c=1.0, upper=3.0), [0.5, 0.0, 1.0, 3.0, 2.0, -1.0, 4.0]),
    "TruncatedNormal": _c(
        dict(mu=0.2, sigma=1.3, lower=-1.0, upper=2.5), [0.3, -1.0, 2.5, -1.5, 3.0, *SPECIAL]
    ),
    "Uniform": _c(dict(lower=-1.0, upper=2.5), [0.3, -1.0, 2.5, -1.5, 3.0, *SPECIAL]),
    "VonMises": _c(dict(mu=0.3, kappa=2.0), [0.5, np.pi, -np.pi, 4.0, -4.0, *SPECIAL]),
    "Wald": _c(dict(mu=1.5, lam=2.0), POSITIVE),
    "Weibull": _c(dict(alpha=1.5, beta=2.0), POSITIVE),
    # discrete
    "Bernoulli": _d(dict(p=0.3), [0, 1, -1, 2]),
    "BetaBinomial": _d(dict(alpha=2.0, beta=3.0, n=10), [3, 0, 10, -1, 11]),
    "Binomial": _d(dict(n=10, p=0.3), [3, 0, 10, -1, 11]),
    "Categorical": _d(dict(p=[0.2, 0.5, 0.3]), [0, 2, -1, 3]),
    "DiscreteUniform": _d(dict(lower=-2, upper=5), [0, -2, 5, -3, 6]),
    "DiscreteWeibull": _d(dict(q=0.6, beta=1.3), COUNTS),
    "Geometric": _d(dict(p=0.3), [1, 5, 0, -1, 1000]),
    "HyperGeometric": _d(dict(N=20, k=7, n=10), [3, 0, 7, -1, 8]),
    "NegativeBinomial": _d(dict(mu=3.0, alpha=2.0), COUNTS),
    "OrderedLogistic": _d(dict(eta=0.3, cutpoints=[-1.0, 0.5, 2.0]), [0, 3, 1, -1, 4]),
    "OrderedProbit": _d(dict(eta=0.3, cutpoints=[-1.0, 0.5, 2.0], sigma=1.2), [0, 3, 1, -1, 4]),
    "Poisson": _d(dict(mu=3.0), COUNTS),
    # multivariate
    "CAR": _c(
        dict(mu=np.zeros(3), W=W3, alpha=0.5, tau=1.5),
        [[0.1, -0.3, 0.2], [0.0, 0.0, 0.0], [40.0, -40.0, 1e20], [np.nan, 0.0, 0.0]],
    ),
    "Dirichlet": _c(dict(a=[1.5, 2.0, 3.0]), SIMPLEX3),
    "DirichletMultinomial": _d(dict(n=5, a=[1.0, 2.0, 3.0]), COUNTS3),
    "ICAR": _c(
        dict(sigma=1.2), [[0.1, -0.3, 0.2], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], W=W3.astype(int)
    ),
    "KroneckerNormal": _built(
        lambda mu, a, b: pm.KroneckerNormal.dist(mu=mu, covs=[a, b]),
        dict(mu=np.zeros(4), a=COV2, b=np.array([[1.0, 0.2], [0.2, 2.0]])),
        [[0.1, -0.3, 0.2, 1.0], [0.0] * 4, [40.0, -40.0, 1e20, 0.0], [np.inf, 0.0, 0.0, 0.0]],
    ),
    "LKJCholeskyCov": _built(
        lambda eta: pm.LKJCholeskyCov.dist(
            n=2, eta=eta, sd_dist=pm.Exponential.dist(1.0), compute_corr=False
        ),
        dict(eta=2.0),
        [[1.0, 0.3, 0.8], [1.0, 0.0, 1.0], [-1.0, 0.3, 0.8], [1.0, 0.3, 0.0]],
    ),
    "LKJCorr": _c(dict(eta=2.0), [CORR3, np.eye(3), NOT_CORR3], n=3),
    "MatrixNormal": _c(
        dict(mu=np.zeros((2, 2)), rowcov=COV2, colcov=np.array([[1.0, -0.3], [-0.3, 0.7]])),
        [[[0.1, -0.3], [0.2, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[40.0, -40.0], [1e20, 0.0]]],
    ),
    "Multinomial": _d(dict(n=5, p=[0.2, 0.3, 0.5]), COUNTS3),
    "MvNormal": _c(
        dict(mu=[0.2, -0.1], cov=COV2), [[0.1, -0.3], [0.0, 0.0], [40.0, -1e20], [np.inf, 0.0]]
    ),
    "MvStudentT": _c(
        dict(nu=4.0, mu=[0.2, -0.1], scale=COV2),
        [[0.1, -0.3], [0.0, 0.0], [40.0, -1e20], [np.inf, 0.0]],
    ),
    "OrderedMultinomial": _d(
        dict(eta=0.3, cutpoints=[-1.0, 0.5, 2.0], n=5),
        [[1, 2, 1, 1], [5, 0, 0, 0], [1, 1, 1, 1], [-1, 2, 2, 2]],
    ),
    "StickBreakingWeights": _c(
        dict(alpha=2.0),
        [[0.2, 0.3, 0.4, 0.1], [0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, -0.5]],
        K=3,
    ),
    "Wishart": _c(
        dict(nu=4.0, V=COV2),
        [[[1.0, 0.2], [0.2, 0.9]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]],
    ),
    "ZeroSumNormal": _c(
        dict(sigma=1.3), [[0.1, -0.3, 0.2], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], shape=(3,)
    ),
    # wrappers
    "Censored": _built(
        lambda mu, sigma: pm.Censored.dist(pm.Normal.dist(mu, sigma), lower=-1.0, upper=2.0),
        dict(mu=0.2, sigma=1.3),
        [0.3, -1.0, 2.0, -1.5, 3.0, *SPECIAL],
    ),
    "Censored(Poisson)": _built(
        lambda mu: pm.Censored.dist(pm.Poisson.dist(mu), lower=None, upper=5),
        dict(mu=3.0),
        [0, 3, 5, 6, -1],
        discrete_=True,
    ),
    "Truncated": _built(
        lambda mu, sigma: pm.Truncated.dist(pm.Normal.dist(mu, sigma), lower=-1.0, upper=2.0),
        dict(mu=0.2, sigma=1.3),
        [0.3, -1.0, 2.0, -1.5, 3.0, *SPECIAL],
    ),
    "Truncated(Poisson)": _built(
        lambda mu: pm.Truncated.dist(pm.Poisson.dist(mu), lower=1, upper=8),
        dict(mu=3.0),
        [1, 3, 8, 0, 9],
        discrete_=True,
    ),
    "Mixture": _built(
        lambda w, mu, sigma: pm.Mixture.dist(
            w=w, comp_dists=[pm.Normal.dist(mu, sigma), pm.Normal.dist(-mu, 2 * sigma)]
        ),
        dict(w=[0.3, 0.7], mu=1.0, sigma=0.8),
        REAL,
    ),
    "Mixture(Poisson)": _built(
        lambda w, mu: pm.Mixture.dist(
            w=w, comp_dists=[pm.Poisson.dist(mu), pm.Poisson.dist(3 * mu)]
        ),
        dict(w=[0.3, 0.7], mu=1.5),
        COUNTS,
        discrete_=True,
    ),
}

SKIPPED = {
    # A function, not a Distribution: it returns a Deterministic of other variables and must
    # be called inside a model; its pieces (ChiSquared, Normal) are in the table.
    "WishartBartlett": "a model-building function without a logp of its own",
}

ENUMERATED = sorted(
    {name for module in (continuous, discrete, multivariate) for name in module.__all__}
)


def test_the_table_covers_every_distribution_pymc_exports():
    covered = {name.split("(")[0] for name in CASES}
    missing = sorted(set(ENUMERATED) - covered - set(SKIPPED))
    assert not missing, (
        f"add these distributions to CASES (or to SKIPPED, with a reason): {missing}"
    )
    assert not set(SKIPPED) & covered
    assert {"Censored", "Truncated", "Mixture"} <= covered


# --- building and compiling -------------------------------------------------------------


def _wrapped(var):
    return (int_identity if var.type.dtype.startswith("int") else identity)(var)


@functools.cache
def _value_graph(name: str, method: str):
    """The parameters, the value and the method's graph; None where PyMC has no such method."""
    case = CASES[name]
    inputs = {k: pt.tensor(k, dtype=v.dtype, shape=v.shape) for k, v in case.params.items()}
    wrapped = {k: _wrapped(v) for k, v in inputs.items()}
    build = case.build or getattr(pm, name).dist
    dist = build(**wrapped, **case.fixed)
    point = _points(name, dist)[0]
    value = pt.tensor("value", dtype=point.dtype, shape=point.shape)
    # No parameter to pass through the wrapped Op (Flat, Interpolated): the value goes.
    upstream = value if inputs else _wrapped(value)
    try:
        return inputs, value, METHODS[method](dist, upstream)
    except NotImplementedError:
        return None


def _graph(name: str, method: str):
    """Inputs, outputs (the method's value and its gradients) and gradient names; None if
    PyMC does not implement the method for this distribution."""
    graph = _value_graph(name, method)
    if graph is None:
        return None
    inputs, value, out = graph
    wrt = {k: v for k, v in inputs.items() if v.type.dtype.startswith("float")}
    if value.type.dtype.startswith("float"):
        wrt["value"] = value
    grads, names = [], []
    for k, v in wrt.items():
        try:
            grads.append(pytensor.grad(pt.sum(out), v, disconnected_inputs="ignore"))
        except (NullTypeGradError, NotImplementedError):
            continue  # PyMC/PyTensor define no gradient here (Interpolated's spline)
        names.append(k)
    return [*inputs.values(), value], [out, *grads], names


def _points(name: str, dist=None) -> list[np.ndarray]:
    case = CASES[name]
    dtype = np.int64 if case.discrete else np.float64
    points = [np.asarray(p, dtype=dtype) for p in case.points]
    if name == "LKJCorr" and dist is not None and dist.type.ndim == 1:
        # pymc 5 takes the upper triangle of the correlation matrix, pymc 6 the matrix.
        rows, cols = np.triu_indices(3, k=1)
        points = [p[rows, cols] for p in points]
    return points


def _compile(graph, mode):
    inputs, outputs, _ = graph
    # PyMC's compile turns parameter checks into switch(cond, logp, -inf), as pm.sample's does.
    return pm.pytensorf.compile(inputs, outputs, mode=mode)


@functools.cache
def _compiled(name: str, method: str, backend: str):
    """The functions with the absorption on and off, or the reason the rule left it alone.

    The backend's rewrites run first under PyTensor's Python linker, which compiles no
    thunk: where the rule leaves the graph alone, the function with the absorption on *is*
    the function without it (the rewrite changed nothing), so only an absorbed graph needs
    the second function, and a graph left alone costs no C or Numba compilation.
    """
    graph = _graph(name, method)
    if graph is None:
        return None
    probe = _compile(graph, _probe_mode(backend))
    if not _absorbed(probe):
        return _left_alone_because(probe.maker.fgraph)
    if all(isinstance(n.op, XlaGraphOp) for n in probe.maker.fgraph.apply_nodes):
        # The whole graph is one XlaGraphOp, which the C and Numba backends run by its
        # perform, as the Python linker does: the probe is the function with it on.
        return probe, _compile(graph, OFF[backend])
    return _compile(graph, backend), _compile(graph, OFF[backend])


def _probe_mode(backend: str) -> Mode:
    """The backend's rewrites, linked by Python's ``perform``: no thunk to compile."""
    mode = get_mode(backend)
    linker = PerformLinker()
    # The rewrites a linker cannot run are left out by the linker: the backend's, not these.
    linker.incompatible_rewrites = mode.linker.incompatible_rewrites
    return Mode(linker=linker, optimizer=mode.provided_optimizer)


def _left_alone_because(fgraph) -> str:
    """The family of the node that kept the graph out of XLA (for the tally)."""
    reason = absorb._reason_for_c(fgraph.apply_nodes)
    if reason is None:
        # Not eligible (too few nodes) or JAX cannot trace it (a spline in SciPy).
        return "no JAX implementation or too small"
    for family in ("special function", "linear algebra", "Check", "index", "integers", "floats"):
        if family in reason:
            return family
    return reason


# --- the comparison ---------------------------------------------------------------------

# (distribution, method): why an absorbed answer may differ from C's, and the check that
# still holds there. Empty: on the verified lines every absorbed answer is C's to rtol 1e-10.
EXPLAINED: dict[tuple[str, str], str] = {}

# (distribution, method, backend): a real difference the rule lets through (strict xfail).
XFAIL: dict[tuple[str, str, str], str] = {}

TALLY: Counter[str] = Counter()


def _same(got, want) -> bool:
    try:
        if isinstance(got, type) or isinstance(want, type):
            return got is want
        np.testing.assert_allclose(got, want, rtol=RTOL)
    except AssertionError:
        return False
    return True


def _params(name: str) -> list[np.ndarray]:
    return list(CASES[name].params.values())


def _cases():
    for name in CASES:
        for method in METHODS:
            for backend in BACKENDS:
                marks = []
                if (name, method, backend) in XFAIL:
                    marks = [pytest.mark.xfail(strict=True, reason=XFAIL[name, method, backend])]
                yield pytest.param(
                    name, method, backend, marks=marks, id=f"{name}-{method}-{backend}"
                )


@pytest.mark.parametrize(("name", "method", "backend"), list(_cases()))
def test_absorbed_distribution_answers_as_the_backend_without_absorption(name, method, backend):
    fns = _compiled(name, method, backend)
    if fns is None:
        TALLY["not implemented"] += 1
        pytest.skip(f"PyMC has no {method} for {name}")
    points = _points(name, _dist_for_shape(name))
    if isinstance(fns, str):
        TALLY[f"{backend} left alone: {fns}"] += 1
        TALLY[f"{backend} left alone, points"] += len(points)
        return
    on, off = fns
    assert _absorbed(on) and not _absorbed(off)
    TALLY[f"{backend} absorbed"] += 1
    wrong = []
    for point in points:
        got = _outcome(lambda point=point: on(*_params(name), point))
        want = _outcome(lambda point=point: off(*_params(name), point))
        for part, g, w in _parts(got, want):
            key = f"{backend} absorbed {part}"
            TALLY[key] += 1
            if _same(g, w):
                TALLY[f"{key} equal"] += 1
            elif (name, method) in EXPLAINED:
                TALLY[f"{key} explained"] += 1
            elif backend != "CVM" and _same_as_c(name, method, point, part, g):
                # Explained: PyTensor's Numba backend answers otherwise than its C backend
                # here (Kumaraswamy's and Moyal's gradients at the support's edge and at
                # ±inf, Wald's at 1e-12 to 3e-4), and the absorbed graph answers as C.
                TALLY[f"{key} explained (Numba differs from C)"] += 1
            else:
                wrong.append(f"{part} at {point.tolist()}: absorbed {g}, not {w}")
    assert not wrong, "; ".join(wrong)


@functools.cache
def _c_reference(name: str, method: str):
    return _compile(_graph(name, method), C_OFF)


def _same_as_c(name, method, point, part, got) -> bool:
    want = _outcome(lambda: _c_reference(name, method)(*_params(name), point))
    return any(_same(got, w) for p, _, w in _parts(want, want) if p == part)


@functools.cache
def _dist_for_shape(name):
    case = CASES[name]
    build = case.build or getattr(pm, name).dist
    params = {k: pt.as_tensor(v) for k, v in case.params.items()}
    return build(**params, **case.fixed)


def _parts(got, want):
    """The value and the gradient as two comparisons (an exception counts for both)."""
    if isinstance(got, type) or isinstance(want, type):
        return [("value", got, want), ("gradient", got, want)]
    grad_got = [np.ravel(g) for g in got[1:]]
    grad_want = [np.ravel(w) for w in want[1:]]
    parts = [("value", got[0], want[0])]
    if grad_want:
        parts.append(("gradient", np.concatenate(grad_got), np.concatenate(grad_want)))
    return parts


@pytest.fixture(scope="module", autouse=True)
def _print_tally(request):
    """Writes the counts after the module's last test (pytest captures output until then)."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = (
        plugins.get_plugin("terminalreporter"),
        plugins.get_plugin("capturemanager"),
    )
    if reporter is None or capture is None or not TALLY:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for key in sorted(TALLY):
            reporter.write_line(f"absorb differential: {key}: {TALLY[key]}")


def test_the_case_list_has_not_shrunk():
    # A table trimmed by accident would still pass every comparison: hold its size.
    points = sum(len(case.points) for case in CASES.values())
    assert len(CASES) >= 66 and points >= 420, (len(CASES), points)
    methods = Counter(
        method for name in CASES for method in METHODS if _value_graph(name, method) is not None
    )
    assert methods["logp"] >= 64 and methods["logcdf"] >= 30 and methods["logccdf"] >= 30, methods


# --- elementwise Ops, property-based ----------------------------------------------------

FLOAT_UNARY = {
    "exp": pt.exp,
    "expm1": pt.expm1,
    "log": pt.log,
    "log1p": pt.log1p,
    "sqrt": pt.sqrt,
    "abs": pt.abs,
    "sign": pt.sign,
    "floor": pt.floor,
    "round": pt.round,
    "tanh": pt.tanh,
    "cosh": pt.cosh,
    "sin": pt.sin,
    "arctan": pt.arctan,
    "arccosh": pt.arccosh,
    "arctanh": pt.arctanh,
    "sigmoid": pt.sigmoid,
    "softplus": pt.softplus,
    "erfc": pt.erfc,
    "erfinv": pt.erfinv,
    "gammaln": pt.gammaln,
    "log1mexp": pt.log1mexp,
    "reciprocal": pt.reciprocal,
}
FLOAT_BINARY = {
    "+": pt.add,
    "-": pt.sub,
    "*": pt.mul,
    "/": pt.true_div,
    "**": pt.pow,
    "%": pt.mod,
    "maximum": pt.maximum,
    "arctan2": pt.arctan2,
    "logaddexp": pt.logaddexp,
    "<": pt.lt,
    "==": pt.eq,
    "switch": lambda a, b: pt.switch(pt.gt(a, b), a * b, a - b),
}
X = np.array([0.3, -1.2])
GRADIENT_LEFT_ON_C = {"gammaln"}  # its derivative is psi, a special function left on C


def _cost(x):
    """Enough nodes beside the tested Op for the absorption to fire."""
    return pt.sum(identity(x) ** 2) + pt.sum(pt.exp(x)) + pt.log(pt.sum(x**2))


@functools.cache
def _float_fns(name: str):
    x, a, b = pt.vector("x"), pt.vector("a"), pt.vector("b")
    if name in FLOAT_UNARY:
        out = FLOAT_UNARY[name](identity(a))
        grad = pytensor.grad(pt.sum(out), a)  # where C's derivative is ±inf, XLA's must be too
        outs = [_cost(x), out, grad]
    else:
        outs = [_cost(x), FLOAT_BINARY[name](identity(a), b)]
    fns = [pytensor.function([x, a, b], outs, mode=m, on_unused_input="ignore") for m in BACKENDS]
    return fns, pytensor.function([x, a, b], outs, mode=C_OFF, on_unused_input="ignore")


# Subnormal inputs are test_xla_flushes_subnormals_where_c_does_not's.
special_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 710.0, -745.0, 1e308]),
)
float_arrays = arrays(np.float64, 5, elements=special_floats)


@pytest.mark.parametrize("name", [*FLOAT_UNARY, *FLOAT_BINARY])
@settings(max_examples=15, deadline=None)
@given(a=float_arrays, b=float_arrays)
def test_absorbed_float_elementwise_ops_answer_as_c(name, a, b):
    fns, want_fn = _float_fns(name)
    want = _outcome(lambda: want_fn(X, a, b))
    for fn in fns:
        assert _absorbed(fn) is (name not in GRADIENT_LEFT_ON_C)
        got = _outcome(lambda fn=fn: fn(X, a, b))
        # A graph left on the Numba backend answers as Numba does (gammaln's derivative at
        # 0: -inf there, +inf in C); an absorbed one, and any on C, as C does.
        if _absorbed(fn) or not _on_numba(fn.maker.mode):
            assert _same_elementwise(got, want), (name, a, b, got, want)


def _same_elementwise(got, want) -> bool:
    """``_same``, but a float C gives near or below the smallest normal may come back as 0.

    XLA's CPU backend flushes subnormal results to zero (``exp(-709)``: C 1.2e-308, XLA 0);
    what that does to a later ``log`` is ``test_xla_flushes_subnormals_where_c_does_not``.
    """
    if isinstance(got, type) or isinstance(want, type):
        return got is want
    for g, w in zip(got, want, strict=True):
        if g.dtype != w.dtype:
            return False
        # XLA divides through a reciprocal, which flushes 1 / 4.5e307 too: a few times tiny.
        atol = 4 * np.finfo(w.dtype).tiny if w.dtype.kind == "f" else 0
        try:
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=atol)
        except AssertionError:
            return False
    return True


@pytest.mark.xfail(
    strict=True,
    reason="XLA's CPU backend flushes subnormal floats to zero, as inputs and as results "
    "(DAZ/FTZ); the rule goes by Op family, not by value, so an absorbed log of a subnormal "
    "is -inf where C's is -744.44, and exp(-709) / 1e10 is 0 where C's is 1.2e-318",
)
def test_xla_flushes_subnormals_where_c_does_not():
    x, a = pt.vector("x"), pt.vector("a")
    outs = [_cost(x), pt.log(identity(a)), pt.exp(identity(a) - 709.0) / 1e10]
    fn = pytensor.function([x, a], outs, mode="CVM")
    want_fn = pytensor.function([x, a], outs, mode=C_OFF)
    assert _absorbed(fn)
    a = np.array([5e-324, 1.0])
    want = want_fn(X, a)
    assert np.all(np.isfinite(want[1])) and want[2][1] > 0  # C keeps the subnormals
    _assert_same(_outcome(lambda: fn(X, a)), want)


def _divisors(dtype) -> np.ndarray:
    return np.array([-3, -2, 1, 2, 7] if np.dtype(dtype).kind == "i" else [3, 5, 1, 2, 7], dtype)


INT_OPS = {
    # a constant divisor without a zero: the only integer // and % the rule absorbs (no -1:
    # the C backend dies of SIGFPE at the lowest integer // -1)
    "// const": (lambda a, b: a // _divisors(a.dtype), True),
    "% const": (lambda a, b: a % _divisors(a.dtype), True),
    "**": (pt.pow, False),
    "<": (pt.lt, True),
    "==": (pt.eq, True),
    "+ wraps": (pt.add, True),
    "* wraps": (pt.mul, True),
    "abs": (lambda a, b: pt.abs(a), True),
    "as int8": (lambda a, b: pt.cast(a, "int8"), True),
    "as uint8": (lambda a, b: pt.cast(a, "uint8"), True),
    "as bool": (lambda a, b: pt.cast(a, "bool"), True),
    "as float32": (lambda a, b: pt.cast(a, "float32"), True),
    "as float64, < float": (lambda a, b: pt.lt(pt.cast(a, "float64"), b * 0.5), True),
    "float as int64": (lambda a, b: pt.cast(pt.cast(a, "float64") * 1e10, "int64"), False),
    "float as int16": (lambda a, b: pt.cast(pt.cast(a, "float64") / 3.0, "int16"), False),
}
# Variable // and %, and int64 comparisons, are test_absorb_safety.py's.
INT_DTYPES = ["int64", "int32", "uint8"]


@functools.cache
def _int_fns(name: str, dtype: str):
    x = pt.vector("x")
    a, b = pt.vector("a", dtype=dtype), pt.vector("b", dtype=dtype)
    outs = [_cost(x), INT_OPS[name][0](int_identity(a), b)]
    fns = [pytensor.function([x, a, b], outs, mode=m, on_unused_input="ignore") for m in BACKENDS]
    return fns, pytensor.function([x, a, b], outs, mode=C_OFF, on_unused_input="ignore")


def _ints(dtype: str):
    info = np.iinfo(dtype)
    edges = [info.min, info.max, 0, 1, -1 if info.min < 0 else 2, 2, 3]
    elements = st.one_of(st.integers(info.min, info.max), st.sampled_from(edges))
    return arrays(dtype, 5, elements=elements)


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("name", INT_OPS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_integer_ops_and_casts_beside_a_wrapped_op_answer_as_c(name, dtype, data):
    a, b = data.draw(_ints(dtype)), data.draw(_ints(dtype))
    fns, want_fn = _int_fns(name, dtype)
    want = _outcome(lambda: want_fn(X, a, b))
    if name in ("// const", "% const") and isinstance(want, list):
        # Explained: at the lowest integer of its dtype PyTensor's C IntDiv and Mod overflow
        # (int32 min % 7: C 9, NumPy and XLA 5; min // 2: C +2**30, NumPy and XLA -2**30).
        # The absorbed graph answers NumPy's floor division there; C's elsewhere.
        numpy_op = np.floor_divide if name == "// const" else np.mod
        lowest = a == np.iinfo(dtype).min
        want[1] = np.where(lowest, numpy_op(a, _divisors(dtype)), want[1]).astype(dtype)
    for fn in fns:
        # Only where the rule says so; where the rule leaves the graph alone the comparison
        # still holds (the same backend answers), so it is made either way.
        assert _absorbed(fn) is INT_OPS[name][1] or _on_numba(fn.maker.mode)
        got = _outcome(lambda fn=fn: fn(X, a, b))
        if _absorbed(fn) or not _on_numba(fn.maker.mode):
            assert _same_elementwise(got, want), (name, dtype, a, b, got, want)
