"""The package's top level: what ``import pymc_jaxops`` costs, and its public surface."""

import ast
import importlib
import inspect
import json
import pkgutil
from importlib.metadata import version

import pytest

import pymc_jaxops
import pymc_jaxops.to_jax
from tests._subprocess import run_python

OPTIONAL = ("arviz", "blackjax", "matplotlib", "numpyro")

_PENDING = {
    "arviz": "pymc_jaxops/to_jax/_rv_samplers.py imports PyMC's distributions at import time "
    "(to register its JAX samplers), and `import pymc` imports arviz (pymc/util.py)",
    "matplotlib": "pymc_jaxops/to_jax/_rv_samplers.py imports pymc, whose arviz import pulls in "
    "matplotlib",
    "numpyro": "pymc_jaxops/dispatch.py imports pytensor.link.jax.dispatch, whose random.py "
    "tries `import numpyro`",
}


@pytest.fixture(scope="module")
def loaded_after_import():
    """Optional heavy modules in ``sys.modules`` right after ``import pymc_jaxops``."""
    code = (
        "import json, sys; import pymc_jaxops; "
        f"print(json.dumps([m for m in {OPTIONAL!r} if m in sys.modules]))"
    )
    proc = run_python(["-c", code], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(m, marks=pytest.mark.xfail(reason=_PENDING[m], strict=False))
        if m in _PENDING
        else m
        for m in OPTIONAL
    ],
)
def test_import_leaves_optional_dependencies_unloaded(loaded_after_import, module):
    assert module not in loaded_after_import


def test_version_is_the_installed_distributions():
    assert pymc_jaxops.__version__ == version("pymc_jaxops")


def test_all_names_resolve_and_are_listed_by_dir():
    for name in pymc_jaxops.__all__:
        assert callable(getattr(pymc_jaxops, name)), name
    assert set(pymc_jaxops.__all__) <= set(dir(pymc_jaxops))


def test_lazy_names_are_the_defining_modules_objects():
    from pymc_jaxops.to_jax.blackjax_nuts import sample_blackjax_nuts
    from pymc_jaxops.to_jax.model import JaxModel, model_to_jax

    assert pymc_jaxops.model_to_jax is model_to_jax
    assert pymc_jaxops.JaxModel is JaxModel
    assert pymc_jaxops.sample_blackjax_nuts is sample_blackjax_nuts
    for name in pymc_jaxops.to_jax.__all__:
        assert getattr(pymc_jaxops.to_jax, name) is getattr(pymc_jaxops, name)
    assert set(pymc_jaxops.to_jax.__all__) <= set(dir(pymc_jaxops.to_jax))


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        pymc_jaxops.nonexistent  # noqa: B018


def _defined_names(module) -> set[str]:
    """Names a module's own code binds at import: functions, classes, assignments."""
    names: set[str] = set()
    blocks = [ast.parse(inspect.getsource(module)).body]
    while blocks:
        for node in blocks.pop():
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, ast.If | ast.Try | ast.With):  # still module level
                blocks += [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
                blocks += [h.body for h in getattr(node, "handlers", [])]
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


def _public_modules():
    yield pymc_jaxops
    for info in pkgutil.walk_packages(pymc_jaxops.__path__, "pymc_jaxops."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


@pytest.mark.parametrize("module", list(_public_modules()), ids=lambda m: m.__name__)
def test_public_modules_expose_only_their_all(module):
    """In a module without a leading underscore, a name it defines is listed or private."""
    exported = set(getattr(module, "__all__", ()))
    leaked = {n for n in _defined_names(module) if not n.startswith("_")} - exported
    assert not leaked, f"{module.__name__}: add to __all__ or prefix with _: {sorted(leaked)}"
    for name in exported:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"
