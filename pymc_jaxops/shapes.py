"""Output types of a JAX function from PyTensor input types, with symbolic dims kept exact.

Dims that PyTensor does not know at build time are traced as JAX symbolic dimensions
(``jax.export.symbolic_shape``), so an output keeps every static dim that is truly
constant, and each unknown output dim comes back as an expression of input dims that
``infer_shape`` turns into a PyTensor graph.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.type import TensorType

Dim = int | str  # a static size, or a symbolic expression over input dims


@dataclass(frozen=True)
class OutputSignature:
    """What tracing a flat JAX function told us about its outputs.

    ``dims[k][j]`` is an int for a static dim, a string expression for a symbolic one, or
    ``None`` when the shape could only be found from concrete input sizes.
    ``sources`` maps each symbol to the ``(input index, axis)`` that defines it.
    """

    types: tuple[TensorType, ...]
    dims: tuple[tuple[Dim | None, ...], ...]
    sources: tuple[tuple[str, tuple[int, int]], ...]
    treedef: object  # jax PyTreeDef of the outputs, as the user function returned them


def _symbol(i: int, d: int) -> str:
    return f"in{i}d{d}"


def _structs(input_types: Sequence[TensorType], shared: bool):
    """ShapeDtypeStructs for the inputs, unknown dims replaced by symbols."""
    unknown = [
        (i, d) for i, t in enumerate(input_types) for d, s in enumerate(t.shape) if s is None
    ]
    names = ["n"] if shared else [_symbol(i, d) for i, d in unknown]
    symbols = (
        dict(zip(names, jax.export.symbolic_shape(", ".join(names)), strict=True))
        if unknown
        else {}
    )
    structs: list[jax.ShapeDtypeStruct] = []
    sources: dict[str, tuple[int, int]] = {}
    for i, t in enumerate(input_types):
        shape = []
        for d, s in enumerate(t.shape):
            if s is None:
                name = "n" if shared else _symbol(i, d)
                sources.setdefault(name, (i, d))
                shape.append(symbols[name])
            else:
                shape.append(s)
        structs.append(jax.ShapeDtypeStruct(tuple(shape), np.dtype(t.dtype)))
    return structs, sources


def _as_dim(d) -> Dim:
    return int(d) if isinstance(d, int | np.integer) else str(d)


def _trace(fn: Callable, structs) -> tuple[list, object]:
    """Abstractly evaluate ``fn`` (any pytree out); return its flat outputs and treedef."""
    captured = {}

    def flat(*args):
        leaves, captured["treedef"] = jax.tree.flatten(fn(*args))
        return leaves

    out = jax.eval_shape(flat, *structs)
    return list(out), captured["treedef"]


def infer_outputs(
    fn: Callable, input_types: Sequence[TensorType], concrete_shapes: Callable | None = None
) -> OutputSignature:
    """Trace ``fn`` (arrays in, a pytree of arrays out) abstractly for its output types.

    Tries, in order: a distinct symbol per unknown input dim; one symbol shared by all
    unknown dims (functions that add or stack inputs of equal, unknown length); and, if
    ``concrete_shapes`` is given, the inputs' current concrete shapes (output dims then
    unknown to PyTensor). The first attempt's error is raised if none succeeds.
    """
    has_unknown = any(s is None for t in input_types for s in t.shape)
    attempts = [False, True] if has_unknown else [False]
    first_error: Exception | None = None
    for shared in attempts:
        structs, sources = _structs(input_types, shared)
        try:
            outs, treedef = _trace(fn, structs)
        except Exception as err:
            first_error = first_error or err
            continue
        dims = tuple(tuple(_as_dim(d) for d in o.shape) for o in outs)
        types = tuple(
            TensorType(o.dtype, shape=tuple(d if isinstance(d, int) else None for d in od))
            for o, od in zip(outs, dims, strict=True)
        )
        return OutputSignature(types, dims, tuple(sorted(sources.items())), treedef)
    if has_unknown and concrete_shapes is not None:
        shapes = concrete_shapes()
        if shapes is not None:
            structs = [
                jax.ShapeDtypeStruct(tuple(s), np.dtype(t.dtype))
                for s, t in zip(shapes, input_types, strict=True)
            ]
            try:
                outs, treedef = _trace(fn, structs)
            except Exception:
                pass
            else:
                types = tuple(TensorType(o.dtype, shape=(None,) * o.ndim) for o in outs)
                dims = tuple((None,) * o.ndim for o in outs)
                return OutputSignature(types, dims, (), treedef)
    assert first_error is not None
    raise first_error


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CALLS = {
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "max": pt.maximum,
    "min": pt.minimum,
    "non_negative": lambda x: pt.maximum(x, 0),
}


def dim_to_pytensor(expr: str, env: dict):
    """Evaluate a JAX symbolic-dim expression (its documented string form) in PyTensor."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exp = ev(node.left), ev(node.right)
            result = base
            for _ in range(int(exp) - 1):
                result = result * base
            return result
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _CALLS
        ):
            return _CALLS[node.func.id](*[ev(a) for a in node.args])
        raise NotImplementedError(f"cannot translate symbolic dim {expr!r}")

    return ev(ast.parse(expr, mode="eval"))
