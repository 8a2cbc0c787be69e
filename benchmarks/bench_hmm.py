"""Per-call cost of logp + gradient of the seed HMM model, three ways, side by side.

- ``pymc_jaxops``: ``model.logp_dlogp_function()`` (PyMC's default backend) with the HMM
  likelihood wrapped by ``@as_pytensor_op``: the whole graph as one XLA call
  (``pymc_jaxops._absorb``, on by default).
- ``pymc_jaxops``, absorption off: the same with the rewrite tag ``"pymc_jaxops_absorb"``
  excluded: one JAX call among PyMC's C thunks.
- ``pytensor.wrap_jax``: the same model with PyTensor's own wrapper (forward and VJP are two
  separate JAX calls).
- pure JAX: ``jax.jit(jax.value_and_grad(...))`` of PyMC's own JAX logp of the same model
  (every model term in one XLA program): the limit.
- ``pymc_jaxops``, JAX mode: the same ``logp_dlogp_function`` compiled with ``mode="JAX"``
  (our Op inlined into one XLA program with the rest of PyMC's graph).

Run: ``python benchmarks/bench_hmm.py [--calls N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import numpy as np
import pytensor
from pytensor.compile.mode import get_default_mode

from benchmarks._common import banner, per_call_us, pure_jax_value_and_grad, pymc_logp_dlogp
from examples.marginal_hmm import build_model, hmm_logp, simulate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    banner("HMM logp+grad per call (70 sequences x 50 steps, 3 states)")
    emissions = simulate()
    ours = build_model(emissions)
    theirs = build_model(emissions, logp_op=pytensor.wrap_jax(hmm_logp))
    fns = {
        "pymc_jaxops": pymc_logp_dlogp(ours),
        "pymc_jaxops, absorption off": pymc_logp_dlogp(
            ours, mode=get_default_mode().excluding("pymc_jaxops_absorb")
        ),
        "pymc_jaxops, JAX mode": pymc_logp_dlogp(ours, mode="JAX"),
        "pytensor.wrap_jax": pymc_logp_dlogp(theirs),
        "pure JAX value_and_grad": pure_jax_value_and_grad(ours),
    }
    values = {name: float(np.asarray(f()[0])) for name, f in fns.items()}
    assert np.allclose(list(values.values()), values["pymc_jaxops"], rtol=1e-9), values
    us = per_call_us(fns, args.calls, args.rounds)
    limit = us["pure JAX value_and_grad"]
    print(f"{'':28s} {'us/call':>10s} {'x pure JAX':>11s}")
    for name, t in us.items():
        print(f"{name:28s} {t:10.1f} {t / limit:11.2f}")


if __name__ == "__main__":
    main()
