"""Every example answers ``--help`` at once, and its help says what each option does."""

import re
from pathlib import Path

import pytest

from tests._subprocess import ROOT, run, run_python

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


def option_help(help_text: str) -> dict[str, str]:
    """``{"--out OUT": "folder for ... (default: ...)", ...}`` from argparse's ``--help``.

    An entry starts with two spaces and a dash; its help may start on the same line (after
    two spaces or more) or on the next, and continues on deeper-indented lines.
    """
    entries: dict[str, str] = {}
    name = None
    for line in help_text.splitlines():
        if re.match(r"  -", line):
            name, _, text = line.strip().partition("  ")
            entries[name] = text.strip()
        elif name and line.startswith("   "):
            entries[name] = f"{entries[name]} {line.strip()}".strip()
        else:
            name = None
    return entries


def test_option_help_reads_wrapped_entries():
    text = (
        "options:\n"
        "  -h, --help   show this help\n"
        "  --sampler {a,b}\n"
        "               which one (default:\n"
        "               a)\n"
    )
    assert option_help(text) == {
        "-h, --help": "show this help",
        "--sampler {a,b}": "which one (default: a)",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_option_says_what_it_does_and_its_default_once(script: Path):
    result = run([str(script), "--help"], timeout=120)
    assert result.returncode == 0, result.err[-3000:]
    options = option_help(result.out)
    assert "--out OUT" in options, result.out
    for name, text in options.items():
        if name.startswith("-h"):
            continue
        what = text.split("(default")[0].strip()
        assert what, f"{script.name} {name}: no help text\n{result.out}"
        # argparse's ArgumentDefaultsHelpFormatter appends "(default: None)" even to a help
        # text that already explains the default.
        assert text.count("(default") == 1, f"{script.name} {name}: {text!r}"
        assert "(default: None)" not in text, f"{script.name} {name}: {text!r}"


def test_radon_help_explains_data_sampler_and_likelihood():
    result = run([str(ROOT / "examples" / "radon.py"), "--help"], timeout=120)
    options = option_help(result.out)
    data = next(text for name, text in options.items() if name.startswith("--data"))
    assert data.count("default") == 1 and "simulate" in data, data
    sampler = next(text for name, text in options.items() if name.startswith("--sampler"))
    assert "(default: numpyro)" in sampler
    likelihood = next(text for name, text in options.items() if name.startswith("--likelihood"))
    assert "(default: jax)" in likelihood
