"""The JAX samplers registered for random variables pytensor 2.38 draws wrongly or not at all,
and every distribution ``model_to_jax`` can draw, checked against its known law."""

import warnings

import jax
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

import pymc_jaxops.to_jax._rv_samplers  # noqa: F401
from pymc_jaxops import model_to_jax


def test_registered_samplers_draw_from_the_right_distributions():
    n = 2000
    rng = pytensor.shared(np.random.default_rng(0))
    rvs = {
        "halfcauchy": (pt.random.halfcauchy(1.0, 2.0, size=n, rng=rng), stats.halfcauchy(1, 2)),
        "halfnormal": (pt.random.halfnormal(1.0, 2.0, size=n, rng=rng), stats.halfnorm(1, 2)),
        "lognormal": (
            pt.random.lognormal(0.5, 0.3, size=n, rng=rng),
            stats.lognorm(0.3, scale=np.exp(0.5)),
        ),
        "invgamma": (pt.random.invgamma(3.0, 2.0, size=n, rng=rng), stats.invgamma(3, 0, 2)),
    }
    with warnings.catch_warnings():
        # The JAX linker copies the shared RNG and says so; irrelevant here.
        warnings.simplefilter("ignore", UserWarning)
        draw = pytensor.function([], [rv for rv, _ in rvs.values()], mode="JAX")
    for (name, (_, dist)), draws in zip(rvs.items(), draw(), strict=True):
        draws = np.asarray(draws)
        assert draws.shape == (n,), name
        assert np.unique(draws).size == n, name
        assert stats.kstest(draws, dist.cdf).pvalue > 1e-3, name


def _jax_function(outputs):
    with warnings.catch_warnings():
        # The JAX linker copies the shared RNG and says so; irrelevant here.
        warnings.simplefilter("ignore", UserWarning)
        return pytensor.function([], outputs, mode="JAX")


def test_categorical_draws_p_not_a_distortion_of_it():
    # PyTensor 2.38 passes logit(p) where jax.random.categorical takes log(p): [0.2, 0.3, 0.5]
    # came out as about [0.144, 0.263, 0.593].
    rng = pytensor.shared(np.random.default_rng(0))
    p = np.array([0.2, 0.3, 0.5])
    (draws,) = _jax_function([pt.random.categorical(p, size=20000, rng=rng)])()
    counts = np.bincount(np.asarray(draws), minlength=3)
    assert counts.sum() == 20000
    assert stats.chisquare(counts, 20000 * p).pvalue > 1e-4


def test_two_draws_from_one_rng_state_agree():
    # Same RNG state, same standard draws: the second is exactly twice the first, as with
    # PyTensor's NumPy backend (PyTensor's JAX draws shared one mutable key holder).
    rng = pytensor.shared(np.random.default_rng(0))
    x = pt.random.normal(0.0, 1.0, size=3, rng=rng)
    y = pt.random.normal(0.0, 2.0, size=3, rng=rng)
    got_x, got_y = _jax_function([x, y])()
    np.testing.assert_allclose(got_y, 2 * np.asarray(got_x), rtol=1e-15)
    ref_x, ref_y = pytensor.function([], [x, y])()
    np.testing.assert_allclose(ref_y, 2 * ref_x, rtol=1e-15)


# --- every distribution model_to_jax can draw, against its known law ----------------------
#
# One model holds one variable per distribution; one jitted, vmapped sample_prior call draws
# N joint samples. Continuous laws get a KS test, discrete ones a chi-square test over their
# support (tail pooled), multivariate ones tests of their marginals and of a projection.
# With a fixed seed the outcome is deterministic; the thresholds (p > 1e-4, |z| < 5) would
# flag a correct sampler about once in 10^4 seeds, while a wrong parameterization (such as
# PyTensor's logit-for-log categorical, z ≈ 17 at this N) fails by orders of magnitude.

N = 4000
P_MIN = 1e-4


def _ks(dist_or_cdf):
    cdf = dist_or_cdf.cdf if hasattr(dist_or_cdf, "cdf") else dist_or_cdf
    return lambda x: stats.kstest(x, cdf).pvalue


def _chi2(pmf, lo=0):
    """Chi-square test of integer draws against ``pmf`` on the support ``lo, lo + 1, ...``.

    Values with an expected count of at least 5 get a bin each; the rest of the support is
    pooled into one bin (merged into the last one if it is still too small).
    """

    def test(x):
        ks = np.arange(lo, lo + 500)
        probs = pmf(ks)
        outside = ~np.isin(x, ks[probs > 0])
        assert not outside.any(), f"draws outside the support: {np.unique(x[outside])}"
        kept = probs * N >= 5
        observed = [np.sum(x == k) for k in ks[kept]] + [np.sum(~np.isin(x, ks[kept]))]
        expected = [*(probs[kept] * N), (1.0 - probs[kept].sum()) * N]
        if expected[-1] < 5:
            pooled_obs, pooled_exp = observed.pop(), expected.pop()
            observed[-1] += pooled_obs
            expected[-1] += pooled_exp
        expected = np.array(expected) * len(x) / np.sum(expected)
        return stats.chisquare(observed, expected).pvalue

    return test


def _discrete(dist):
    return _chi2(dist.pmf, lo=int(dist.support()[0]))


def _binomial_z_pvalue(hits, p):
    z = (np.sum(hits) - len(hits) * p) / np.sqrt(len(hits) * p * (1 - p))
    return 2 * stats.norm.sf(abs(z))


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ordered(cdf, eta, cuts):
    # P(y = 0) = 1 - F(eta - c0), P(y = k) = F(eta - c_{k-1}) - F(eta - c_k), P(y = K) = F(...)
    above = cdf(eta - np.asarray(cuts))
    probs = -np.diff(np.concatenate([[1.0], above, [0.0]]))
    return lambda k: np.where((k >= 0) & (k < probs.size), probs[np.clip(k, 0, probs.size - 1)], 0)


ZI_PSI = 0.7
COV = np.array([[1.0, 0.5], [0.5, 2.0]])
SCALAR = {
    # name: (pm variable factory, test of its N draws -> p-value)
    "normal": (lambda: pm.Normal("normal", 1.0, 2.0), _ks(stats.norm(1, 2))),
    "halfnormal": (lambda: pm.HalfNormal("halfnormal", 2.0), _ks(stats.halfnorm(0, 2))),
    "exponential": (lambda: pm.Exponential("exponential", 2.0), _ks(stats.expon(0, 0.5))),
    "gamma": (lambda: pm.Gamma("gamma", 2.0, 3.0), _ks(stats.gamma(2, 0, 1 / 3))),
    "beta": (lambda: pm.Beta("beta", 2.0, 3.0), _ks(stats.beta(2, 3))),
    "studentt": (lambda: pm.StudentT("studentt", nu=5, mu=1, sigma=2), _ks(stats.t(5, 1, 2))),
    "cauchy": (lambda: pm.Cauchy("cauchy", 1.0, 2.0), _ks(stats.cauchy(1, 2))),
    "halfcauchy": (lambda: pm.HalfCauchy("halfcauchy", 2.0), _ks(stats.halfcauchy(0, 2))),
    "lognormal": (
        lambda: pm.LogNormal("lognormal", 0.5, 0.3),
        _ks(stats.lognorm(0.3, scale=np.exp(0.5))),
    ),
    "uniform": (lambda: pm.Uniform("uniform", -1.0, 3.0), _ks(stats.uniform(-1, 4))),
    "laplace": (lambda: pm.Laplace("laplace", 1.0, 2.0), _ks(stats.laplace(1, 2))),
    "logistic": (lambda: pm.Logistic("logistic", 1.0, 2.0), _ks(stats.logistic(1, 2))),
    "inversegamma": (
        lambda: pm.InverseGamma("inversegamma", 3.0, 2.0),
        _ks(stats.invgamma(3, 0, 2)),
    ),
    "chisquared": (lambda: pm.ChiSquared("chisquared", 3.0), _ks(stats.chi2(3))),
    "gumbel": (lambda: pm.Gumbel("gumbel", 1.0, 2.0), _ks(stats.gumbel_r(1, 2))),
    "vonmises": (lambda: pm.VonMises("vonmises", 0.0, 2.0), _ks(stats.vonmises(2.0))),
    "pareto": (lambda: pm.Pareto("pareto", 3.0, 2.0), _ks(stats.pareto(3, scale=2))),
    "kumaraswamy": (
        lambda: pm.Kumaraswamy("kumaraswamy", 2.0, 3.0),
        _ks(lambda x: 1 - (1 - np.clip(x, 0, 1) ** 2) ** 3),
    ),
    "halfstudentt": (
        lambda: pm.HalfStudentT("halfstudentt", nu=5, sigma=2),
        _ks(lambda x: np.clip(2 * stats.t(5, 0, 2).cdf(x) - 1, 0, 1)),
    ),
    "asymmetriclaplace": (
        lambda: pm.AsymmetricLaplace("asymmetriclaplace", kappa=2.0, mu=1.0, b=0.5),
        _ks(stats.laplace_asymmetric(2.0, 1.0, 2.0)),
    ),
    "logitnormal": (
        lambda: pm.LogitNormal("logitnormal", 0.5, 1.5),
        _ks(lambda x: stats.norm(0.5, 1.5).cdf(np.log(x) - np.log1p(-x))),
    ),
    "normalmixture": (
        lambda: pm.NormalMixture("normalmixture", [0.3, 0.7], [0.0, 3.0], [1.0, 0.5]),
        _ks(lambda x: 0.3 * stats.norm(0, 1).cdf(x) + 0.7 * stats.norm(3, 0.5).cdf(x)),
    ),
    "weibull": (lambda: pm.Weibull("weibull", 1.5, 2.0), _ks(stats.weibull_min(1.5, 0, 2))),
    "triangular": (
        lambda: pm.Triangular("triangular", lower=0.0, c=1.0, upper=3.0),
        _ks(stats.triang(1 / 3, 0, 3)),
    ),
    "truncatednormal": (
        lambda: pm.TruncatedNormal("truncatednormal", 0.5, 2.0, lower=-1.0, upper=2.0),
        _ks(stats.truncnorm(-0.75, 0.75, 0.5, 2.0)),
    ),
    "truncated": (
        lambda: pm.Truncated("truncated", pm.Normal.dist(0.0, 1.0), lower=-1.0, upper=2.0),
        _ks(stats.truncnorm(-1.0, 2.0)),
    ),
    "truncatedexponential": (
        lambda: pm.Truncated("truncatedexponential", pm.Exponential.dist(1.0), upper=2.0),
        _ks(stats.truncexpon(2.0)),
    ),
    "wald": (lambda: pm.Wald("wald", mu=1.0, lam=2.0), _ks(stats.invgauss(0.5, 0, 2.0))),
    "skewnormal": (
        lambda: pm.SkewNormal("skewnormal", mu=0.5, sigma=2.0, alpha=3.0),
        _ks(stats.skewnorm(3.0, 0.5, 2.0)),
    ),
    "rice": (lambda: pm.Rice("rice", nu=1.0, sigma=2.0), _ks(stats.rice(0.5, 0, 2.0))),
    "moyal": (lambda: pm.Moyal("moyal", 0.5, 2.0), _ks(stats.moyal(0.5, 2.0))),
    "exgaussian": (
        lambda: pm.ExGaussian("exgaussian", mu=0.5, sigma=1.0, nu=2.0),
        _ks(stats.exponnorm(2.0, 0.5, 1.0)),
    ),
    "bernoulli": (lambda: pm.Bernoulli("bernoulli", 0.3), _discrete(stats.bernoulli(0.3))),
    "binomial": (lambda: pm.Binomial("binomial", 10, 0.3), _discrete(stats.binom(10, 0.3))),
    "poisson": (lambda: pm.Poisson("poisson", 3.5), _discrete(stats.poisson(3.5))),
    "categorical": (
        lambda: pm.Categorical("categorical", p=[0.2, 0.3, 0.5]),
        _chi2(lambda k: np.select([k == 0, k == 1, k == 2], [0.2, 0.3, 0.5], 0.0)),
    ),
    "negativebinomial": (
        lambda: pm.NegativeBinomial("negativebinomial", mu=3.0, alpha=2.0),
        _discrete(stats.nbinom(2.0, 2.0 / 5.0)),
    ),
    "geometric": (lambda: pm.Geometric("geometric", 0.3), _discrete(stats.geom(0.3))),
    "betabinomial": (
        lambda: pm.BetaBinomial("betabinomial", 2.0, 3.0, 10),
        _discrete(stats.betabinom(10, 2, 3)),
    ),
    "discreteweibull": (
        lambda: pm.DiscreteWeibull("discreteweibull", 0.5, 1.5),
        _chi2(lambda k: np.where(k >= 0, 0.5 ** (k**1.5) - 0.5 ** ((k + 1) ** 1.5), 0.0)),
    ),
    "zeroinflatedpoisson": (
        lambda: pm.ZeroInflatedPoisson("zeroinflatedpoisson", ZI_PSI, 3.0),
        _chi2(lambda k: ZI_PSI * stats.poisson(3.0).pmf(k) + (1 - ZI_PSI) * (k == 0)),
    ),
    "zeroinflatedbinomial": (
        lambda: pm.ZeroInflatedBinomial("zeroinflatedbinomial", ZI_PSI, 10, 0.4),
        _chi2(lambda k: ZI_PSI * stats.binom(10, 0.4).pmf(k) + (1 - ZI_PSI) * (k == 0)),
    ),
    "zeroinflatednegativebinomial": (
        lambda: pm.ZeroInflatedNegativeBinomial(
            "zeroinflatednegativebinomial", ZI_PSI, mu=3.0, alpha=2.0
        ),
        _chi2(lambda k: ZI_PSI * stats.nbinom(2, 0.4).pmf(k) + (1 - ZI_PSI) * (k == 0)),
    ),
    "discreteuniform": (
        lambda: pm.DiscreteUniform("discreteuniform", 2, 7),
        _discrete(stats.randint(2, 8)),
    ),
    "orderedlogistic": (
        lambda: pm.OrderedLogistic("orderedlogistic", 0.5, [-1.0, 1.0]),
        _chi2(_ordered(_expit, 0.5, [-1.0, 1.0])),
    ),
    "orderedprobit": (
        lambda: pm.OrderedProbit("orderedprobit", 0.5, [-1.0, 1.0]),
        _chi2(_ordered(stats.norm.cdf, 0.5, [-1.0, 1.0])),
    ),
}


def _multivariate_checks(d):
    """(name, p-value) pairs for the vector-valued variables of ``drawable_model``."""
    out = []
    w = np.asarray(d["dirichlet"])
    for i, a in enumerate([1.0, 2.0, 3.0]):
        out.append((f"dirichlet[{i}]", _ks(stats.beta(a, 6.0 - a))(w[:, i])))
    m = np.asarray(d["mvnormal"])
    out.append(("mvnormal[0]", _ks(stats.norm(0, 1))(m[:, 0])))
    out.append(("mvnormal[1]", _ks(stats.norm(1, np.sqrt(2)))(m[:, 1])))
    out.append(("mvnormal[0]+[1]", _ks(stats.norm(1, np.sqrt(COV.sum())))(m.sum(1))))
    t = np.asarray(d["mvstudentt"])
    out.append(("mvstudentt[0]", _ks(stats.t(5, 0, 1))(t[:, 0])))
    out.append(("mvstudentt[0]+[1]", _ks(stats.t(5, 1, np.sqrt(COV.sum())))(t.sum(1))))
    c = np.asarray(d["multinomial"])
    assert (c.sum(1) == 10).all()
    dm = np.asarray(d["dirichletmultinomial"])
    assert (dm.sum(1) == 10).all()
    for i, (p, a) in enumerate(zip([0.2, 0.3, 0.5], [1.0, 2.0, 3.0], strict=True)):
        out.append((f"multinomial[{i}]", _discrete(stats.binom(10, p))(c[:, i])))
        out.append(
            (f"dirichletmultinomial[{i}]", _discrete(stats.betabinom(10, a, 6 - a))(dm[:, i]))
        )
    z = np.asarray(d["zerosumnormal"])
    np.testing.assert_allclose(z.sum(1), 0.0, atol=1e-12)
    out.append(("zerosumnormal[0]", _ks(stats.norm(0, np.sqrt(2 / 3)))(z[:, 0])))
    g = np.asarray(d["randomwalk"])
    out.append(("randomwalk[5]", _ks(stats.norm(0, np.sqrt(6)))(g[:, 5])))
    ar = np.asarray(d["ar"])
    var = 1.0
    for _ in range(5):
        var = 0.25 * var + 1.0
    out.append(("ar[5]", _ks(stats.norm(0, np.sqrt(var)))(ar[:, 5])))
    r = np.asarray(d["lkjcorr"])
    if r.ndim == 3:  # pymc 6 draws the Cholesky factor; pymc 5 the packed upper triangle
        r = np.einsum("nij,nkj->nik", r, r)[:, *np.triu_indices(3, 1)]
    for i in range(3):
        out.append((f"lkjcorr[{i}]", _ks(stats.beta(2.5, 2.5, loc=-1, scale=2))(r[:, i])))
    cz = np.asarray(d["censored"])
    p_out = stats.norm.cdf(-1.0)  # each bound holds the mass beyond it
    out.append(("censored at -1", _binomial_z_pvalue(cz == -1.0, p_out)))
    out.append(("censored at 1", _binomial_z_pvalue(cz == 1.0, p_out)))
    out.append(("censored inside", _ks(stats.truncnorm(-1, 1))(cz[np.abs(cz) < 1.0])))
    return out


def drawable_model() -> pm.Model:
    with pm.Model() as model:
        for make, _ in SCALAR.values():
            make()
        pm.Dirichlet("dirichlet", [1.0, 2.0, 3.0])
        pm.MvNormal("mvnormal", [0.0, 1.0], COV)
        pm.MvStudentT("mvstudentt", nu=5, mu=[0.0, 1.0], scale=COV)
        pm.Multinomial("multinomial", 10, [0.2, 0.3, 0.5])
        pm.DirichletMultinomial("dirichletmultinomial", 10, [1.0, 2.0, 3.0])
        pm.ZeroSumNormal("zerosumnormal", 1.0, shape=3)
        pm.GaussianRandomWalk("randomwalk", 0.0, 1.0, init_dist=pm.Normal.dist(0, 1), steps=5)
        pm.AR("ar", [0.5], 1.0, init_dist=pm.Normal.dist(0, 1), steps=5)
        pm.LKJCorr("lkjcorr", n=3, eta=2.0)
        pm.Censored("censored", pm.Normal.dist(0, 1), lower=-1.0, upper=1.0)
    return model


@pytest.mark.slow
def test_model_to_jax_draws_every_distribution_from_its_law():
    jm = model_to_jax(drawable_model())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        draws = jax.jit(jax.vmap(jm.sample_prior))(jax.random.split(jax.random.key(7), N))
    draws = {k: np.asarray(v) for k, v in draws.items()}
    results = [(name, test(draws[name])) for name, (_, test) in SCALAR.items()]
    results += _multivariate_checks(draws)
    failed = {name: p for name, p in results if not p > P_MIN}
    assert not failed, f"draws do not follow the distribution (p-values): {failed}"
