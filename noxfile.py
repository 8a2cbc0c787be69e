"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s examples``, ``nox -s bench``."""

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
PY = "3.11"
ROOT = Path(__file__).parent


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The test suite, as CI runs it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PY)
def examples(session: nox.Session) -> None:
    """Run every example script; plots go to examples/out/."""
    session.install("-e", ".[examples]")
    out = ROOT / "examples" / "out"
    for script in sorted((ROOT / "examples").glob("[!_]*.py")):
        session.run("python", str(script), "--out", str(out), *session.posargs)


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Side-by-side ratio benchmarks (never run by the tests)."""
    session.install("-e", ".[bench]")
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
