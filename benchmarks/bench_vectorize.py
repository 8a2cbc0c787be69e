"""The vmapped JaxOp against the Blockwise loop PyTensor builds without pymc_jaxops.

Two cases, each as value and as value+gradient, compiled in PyTensor's default (C) mode:

* a cheap function (a Normal log density of 5 points) at batch 1000, where the loop pays
  one JAX dispatch per item (goal: at least 20x faster);
* the seed HMM's likelihood (70 sequences x 50 steps) over a batch of posterior draws,
  where each item is real work and the gain is smaller.

Run: ``python benchmarks/bench_vectorize.py [--batch 1000] [--hmm-batch 100]``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import vectorize_graph
from pytensor.tensor.blockwise import vectorize_node_fallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import banner
from examples import marginal_hmm
from pymc_jaxops import as_pytensor_op


@as_pytensor_op
def normal_logp(x, mu, sigma):
    return jnp.sum(-0.5 * ((x - mu) / sigma) ** 2 - jnp.log(sigma))


def _loop(out, replace):
    """What vectorize_graph gave before pymc_jaxops: a Blockwise around the JaxOp."""
    node = out.owner
    batched = [replace.get(i, i) for i in node.inputs]
    return vectorize_node_fallback(node.op, node, *batched).outputs[0]


def _time(fn, args, number):
    fn(*args)
    return min(timeit.repeat(lambda: fn(*args), number=number, repeat=3)) / number


def compare(label, out, wrt, replace, values, number):
    vmapped = vectorize_graph(out, replace)
    loop = _loop(out, replace)
    inputs = list(replace.values())
    rows = []
    for kind in ("value", "value+grad"):
        fns = []
        for batched in (vmapped, loop):
            outs = [batched]
            if kind == "value+grad":
                outs.append(pt.grad(batched.sum(), replace[wrt]))
            fns.append(pytensor.function(inputs, outs))
        got, ref = fns[0](*values), fns[1](*values)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-10)  # same numbers, one call vs a loop
        t_vmap, t_loop = (_time(fn, values, number) for fn in fns)
        rows.append((kind, t_vmap, t_loop))
    for kind, t_vmap, t_loop in rows:
        print(
            f"{label:<34}{kind:<12}vmap {t_vmap * 1e3:9.2f} ms   loop {t_loop * 1e3:9.2f} ms"
            f"   {t_loop / t_vmap:6.1f}x"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--hmm-batch", type=int, default=100)
    args = parser.parse_args(argv)
    banner("vectorized graphs: one vmapped JaxOp vs the Blockwise loop")
    rng = np.random.default_rng(0)

    x, mu, sigma = pt.vector("x"), pt.scalar("mu"), pt.scalar("sigma")
    mus, sigmas = pt.vector("mus"), pt.vector("sigmas")
    compare(
        f"cheap function, batch {args.batch}",
        normal_logp(x, mu, sigma),
        mu,
        {x: x, mu: mus, sigma: sigmas},
        [rng.normal(size=5), rng.normal(size=args.batch), rng.uniform(0.5, 2, args.batch)],
        number=5,
    )

    emissions = marginal_hmm.simulate()
    signal, noise = pt.scalar("signal"), pt.scalar("noise")
    log_init, log_trans = np.log(marginal_hmm.P_INITIAL), np.log(marginal_hmm.P_TRANSITION)
    hmm = marginal_hmm.hmm_logp_op(emissions, signal, noise, log_init, log_trans)
    signals, noises = pt.vector("signals"), pt.vector("noises")
    n = args.hmm_batch
    compare(
        f"HMM 70x50, batch {n}",
        hmm,
        signal,
        {signal: signals, noise: noises},
        [rng.normal(1.15, 0.01, n), rng.uniform(0.14, 0.16, n)],
        number=2,
    )


if __name__ == "__main__":
    main()
