"""Does one CPU device per core slow the single-device paths? Side by side, in child processes.

``import pymc_jaxops`` makes JAX expose one CPU device per core (``pymc_jaxops.devices``).
XLA's CPU client could split its threads between the devices, which would slow every
computation that runs on one device: PyMC's own NUTS calling a wrapped JAX function, a
whole-model JAX program, a vmapped Op. The device count is fixed per process, so each
setting runs in its own child process; the children alternate (``--repeat`` times) so both
settings see the same machine load, and the best time of each setting is compared.

Run: ``python benchmarks/bench_devices.py [--calls 100] [--rounds 5] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# JAX_NUM_CPU_DEVICES=1 rather than PYMC_JAXOPS_CPU_DEVICES=off: importing
# pymc.sampling.jax (as bench_hmm does) sets XLA_FLAGS to 100 CPU devices.
SETTINGS = {"1 device": {"JAX_NUM_CPU_DEVICES": "1"}, "1 per core": {}}


def _child(calls: int, rounds: int) -> dict[str, float]:
    import jax
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    import pymc_jaxops  # noqa: F401  (first: sets the device count)
    from benchmarks._common import per_call_us
    from benchmarks.bench_hmm import _pure_jax, _pymc_logp_dlogp
    from examples import marginal_hmm

    model = marginal_hmm.build_model(marginal_hmm.simulate())
    signal, noise = pt.scalar("signal"), pt.scalar("noise")
    log_init, log_trans = np.log(marginal_hmm.P_INITIAL), np.log(marginal_hmm.P_TRANSITION)
    hmm = marginal_hmm.hmm_logp_op(marginal_hmm.simulate(), signal, noise, log_init, log_trans)
    signals, noises = pt.vector("signals"), pt.vector("noises")
    batched = vectorize_graph(hmm, {signal: signals, noise: noises})
    vec = pytensor.function([signals, noises], batched)
    rng = np.random.default_rng(0)
    s, n = rng.normal(1.15, 0.01, 100), rng.uniform(0.14, 0.16, 100)
    fns = {
        "HMM logp+dlogp, PyMC default backend (C)": _pymc_logp_dlogp(model),
        "HMM logp+dlogp, mode=JAX": _pymc_logp_dlogp(model, mode="JAX"),
        "HMM logp+dlogp, pure JAX": _pure_jax(model),
        "HMM value, vmapped JaxOp, batch 100": lambda: vec(s, n),
    }
    us = per_call_us(fns, calls, rounds)
    return {**us, "devices": len(jax.devices())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.calls, args.rounds)))
        return

    from benchmarks._common import banner

    banner("single-device paths: 1 CPU device vs 1 CPU device per core")
    best: dict[str, dict[str, float]] = {label: {} for label in SETTINGS}
    devices = {}
    for _ in range(args.repeat):
        for label, value in SETTINGS.items():
            env = {**os.environ, **value}
            cmd = [sys.executable, __file__, "--child", f"--calls={args.calls}"]
            cmd.append(f"--rounds={args.rounds}")
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if out.returncode:
                sys.exit(f"bench_devices: child failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            devices[label] = int(row.pop("devices"))
            for case, us in row.items():
                best[label][case] = min(best[label].get(case, float("inf")), us)
    off, auto = list(SETTINGS)
    print(f"devices: {devices[off]} vs {devices[auto]}")
    print(f"{'case':44s}{'1 device us':>13s}{'per core us':>13s}{'ratio':>8s}")
    for case in best[off]:
        a, b = best[off][case], best[auto][case]
        print(f"{case:44s}{a:13.1f}{b:13.1f}{b / a:8.2f}")


if __name__ == "__main__":
    main()
