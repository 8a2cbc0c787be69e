"""numba_mixture imports pymc_jaxops before anything that can start JAX."""

import ast
import sys

from tests._subprocess import ROOT, child_env, run_script

SCRIPT = ROOT / "examples" / "numba_mixture.py"


def _imports_in_order(path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, in the order they run."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return sorted(found)


def test_pymc_jaxops_is_the_first_import_outside_the_standard_library():
    # blackjax, numpyro and jax.numpy start JAX when imported; pymc_jaxops can only give JAX
    # one CPU device per core before that, and otherwise warns.
    modules = [
        m for _, m in _imports_in_order(SCRIPT) if m.split(".")[0] not in sys.stdlib_module_names
    ]
    assert modules[0].split(".")[0] == "pymc_jaxops", modules
    first = {m.split(".")[0]: i for i, m in reversed(list(enumerate(modules)))}
    for starts_jax in ("blackjax", "numpyro"):
        assert first["pymc_jaxops"] < first[starts_jax], modules


def test_importing_the_example_leaves_pymc_jaxops_its_cpu_devices(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import examples.numba_mixture\nimport jax\nprint(len(jax.devices('cpu')))\n")
    # Two devices asked for whatever this machine's cores, no JAX device setting inherited.
    code, out, err = run_script(probe, env=child_env(PYMC_JAXOPS_CPU_DEVICES="2"), timeout=300)
    assert code == 0, err[-3000:]
    assert "JAX started before pymc_jaxops" not in err, err[-3000:]
    assert out.strip().splitlines()[-1] == "2", (out, err[-3000:])
