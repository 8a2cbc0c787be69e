"""JAX dispatch: the whole graph, our Ops inlined, compiles to one JAX function."""

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt

from pymc_jaxops import as_pytensor_op


def test_jax_mode_matches_default_mode(rng):
    @as_pytensor_op
    def f(x, tree):
        return {"v": jnp.tanh(x) * tree["s"], "t": jnp.sum(x**2) + tree["s"]}

    x, s = pt.vector("x"), pt.scalar("s")
    out = f(x, {"s": s})
    cost = out["v"].sum() * out["t"]
    outputs = [out["v"], out["t"], *pt.grad(cost, [x, s])]
    xv = rng.normal(size=5)
    want = pytensor.function([x, s], outputs)(xv, 0.7)
    got = pytensor.function([x, s], outputs, mode="JAX")(xv, 0.7)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
