"""Do parallel chains pay? Wall time of whole ``python script.py`` runs, cores=2 / cores=1.

Each run is a fresh ``python benchmarks/scripts/mp_user_script.py MODEL CORES CTX`` (a
guarded user script), timed from start to exit, so interpreter start, imports, compilation
and worker start-up all count, as they do for a user. Per model, the runs alternate between
``cores=1`` and ``cores=2`` so both share whatever else the machine is doing. Two ways of
starting the chains are compared:

* ``spawn``: what ``pymc_jaxops`` did before its process handling, ``spawn`` (the worker
  re-runs the script's imports) with this package's process handling switched off
  (``PYMC_JAXOPS_SAFE_PROCESSES=0``, ``mp_ctx="spawn"``);
* ``processes``: chain processes started fresh without ``__main__``, all at once (chain
  threads switched off, ``PYMC_JAXOPS_CHAIN_THREADS=off``);
* ``default``: what a user gets: chains in threads of the script's process where that pays
  (``pymc_jaxops._thread_start``), fresh processes otherwise.

Models: the seed HMM (2 chains x 200 tune / 200 draws) and a cheap Normal likelihood
(2 chains x 1000 / 1000).

Run: ``python benchmarks/bench_multiprocess.py [--repeats N] [--models hmm,cheap]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import banner, run_script  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "scripts" / "mp_user_script.py"
VARIANTS = {
    "spawn": ({"PYMC_JAXOPS_SAFE_PROCESSES": "0"}, "spawn"),
    "processes": ({"PYMC_JAXOPS_CHAIN_THREADS": "off"}, "default"),
    "default": ({}, "default"),
}


def _wall_s(model: str, cores: int, variant: str) -> float:
    extra_env, ctx = VARIANTS[variant]
    env = {**os.environ, **extra_env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    command = [sys.executable, str(SCRIPT), model, str(cores), ctx]
    return run_script(command, env, str(ROOT))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--models", default="hmm,cheap")
    parser.add_argument("--variants", default="spawn,processes,default")
    args = parser.parse_args()
    banner("bench_multiprocess: wall time of `python script.py`, cores=2 / cores=1")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min)")
    print("| model | start | cores=1 s | cores=2 s | ratio |")
    print("|---|---|---:|---:|---:|")
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            walls: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeats):
                for cores in (1, 2):
                    walls[cores].append(_wall_s(model, cores, variant))
            one, two = min(walls[1]), min(walls[2])
            print(f"| {model} | {variant} | {one:.1f} | {two:.1f} | {two / one:.2f} |", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
