"""Every example answers ``--help`` without importing the scientific stack first."""

from pathlib import Path

import pytest

from tests._subprocess import ROOT, run_python

SCRIPTS = sorted((ROOT / "examples").glob("[!_]*.py"))
HEAVY = {"jax", "pymc", "pytensor", "numba", "arviz", "matplotlib"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_parses_arguments_before_heavy_imports(script: Path):
    proc = run_python(["-X", "importtime", str(script), "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage:")
    # The README promises that every example writes its plots to examples/out by default.
    assert "--out" in proc.stdout
    assert str(Path("examples") / "out") in proc.stdout.replace("\n", "")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert not HEAVY & imported, f"--help imported {sorted(HEAVY & imported)}"
