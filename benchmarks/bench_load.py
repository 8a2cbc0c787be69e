"""Load: resident memory over 100,000 logp+grad calls of a compiled function.

Run: ``python benchmarks/bench_load.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt

from benchmarks._common import banner
from pymc_jaxops import as_pytensor_op


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args(argv)
    banner(f"memory over {args.calls:,} logp+grad calls")

    @as_pytensor_op
    def ripple(x, a):
        return jnp.sum(jnp.sin(x * a) ** 2 + jnp.log1p(x**2))

    x, a = pt.vector("x"), pt.scalar("a")
    out = ripple(x, a)
    f = pytensor.function([x, a], [out, *pt.grad(out, [x, a])])
    xv = np.linspace(-1, 1, 100)
    for _ in range(2000):
        f(xv, 1.3)
    before = _rss_mb()
    t0 = time.perf_counter()
    checkpoints = {args.calls // 4 * k for k in range(1, 5)}
    for i in range(1, args.calls + 1):
        f(xv, 1.0 + i * 1e-6)
        if i in checkpoints:
            print(f"after {i:>7,} calls: RSS {_rss_mb():7.1f} MB (+{_rss_mb() - before:.1f} MB)")
    elapsed = time.perf_counter() - t0
    print(f"growth {_rss_mb() - before:.1f} MB; {elapsed / args.calls * 1e6:.1f} us/call")


if __name__ == "__main__":
    main()
