"""Compile time as a user pays it: whole ``python script.py`` runs, ours ÷ ``wrap_jax``.

Each run is a fresh ``python benchmarks/scripts/first_session_script.py WRAPPER MODEL``: a
script that wraps a JAX likelihood of ``bench_one_pass.py`` (``as_pytensor_op`` or
``pytensor.wrap_jax``), builds the model, runs ``pm.sample`` (PyMC's defaults on the line it
runs on, 2 chains), then builds and samples it again, as a notebook cell run twice does.
Timed from start to exit, so imports, graph building, every compilation and the sampling
all count. PyTensor's C and Numba caches stay warm for both contenders (the user ran PyMC
before); ours starts with an empty XLA disk cache ("first session") and, in a second run,
with the one the first left ("later session"). Contenders alternate within each repeat,
so both share whatever else the machine is doing; each figure is the best of the repeats.
The MLP (b) is not run by default: NUTS takes hundreds of leapfrog steps per draw on its
posterior, so its runs measure sampling (minutes), not compilation.

Run: ``python benchmarks/bench_first_session.py [--repeats N] [--models c,d] [--draws D]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import banner, run_script  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "scripts" / "first_session_script.py"


def _run(wrapper: str, model: str, draws: int, cache: str) -> dict:
    env = {**os.environ, "DRAWS": str(draws), "PYMC_JAXOPS_XLA_CACHE": cache}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    wall, out = run_script([sys.executable, str(SCRIPT), wrapper, model], env, str(ROOT))
    lines = [line for line in out.splitlines() if line.startswith("TIMES ")]
    if not lines:
        raise RuntimeError(
            f"{SCRIPT.name} {wrapper} {model} printed no TIMES line:\n{out[-3000:]}"
        )
    return {"wall": wall, **json.loads(lines[-1][len("TIMES ") :])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="c,d")
    parser.add_argument("--draws", type=int, default=500, help="tuning steps and draws")
    args = parser.parse_args()
    banner("bench_first_session: `python script.py` with pm.sample, ours vs pytensor.wrap_jax")
    print(
        f"2 chains x {args.draws} tune / {args.draws} draws; load average at start: "
        f"{os.getloadavg()[0]:.2f} (1 min)"
    )
    print(
        "| model | ours, first session s | ours, later session s | `wrap_jax` s "
        "| first ÷ `wrap_jax` | later ÷ `wrap_jax` | sampled again: ours / `wrap_jax` s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        runs: dict[str, list[dict]] = {"first": [], "later": [], "wrap_jax": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="pymc_jaxops_xla_") as cache:
                runs["first"].append(_run("ours", model, args.draws, cache))
                runs["wrap_jax"].append(_run("wrap_jax", model, args.draws, cache))
                runs["later"].append(_run("ours", model, args.draws, cache))
        best = {k: min(r["wall"] for r in v) for k, v in runs.items()}
        again = {k: min(r["again"] for r in v) for k, v in runs.items()}
        print(
            f"| {model} | {best['first']:.1f} | {best['later']:.1f} | {best['wrap_jax']:.1f} "
            f"| {best['first'] / best['wrap_jax']:.2f} | {best['later'] / best['wrap_jax']:.2f} "
            f"| {again['first']:.1f} / {again['wrap_jax']:.1f} |",
            flush=True,
        )
        ours, theirs = runs["first"][0]["means"], runs["wrap_jax"][0]["means"]
        print(f"  posterior means, first run: ours {ours}, wrap_jax {theirs}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
