"""The JAX samplers registered for random variables pytensor 2.38 cannot draw in JAX."""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy import stats

import pymc_jaxops._jax_rv_samplers  # noqa: F401


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
