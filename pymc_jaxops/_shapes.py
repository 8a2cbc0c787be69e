"""Output types of a JAX function from PyTensor input types, with symbolic dims kept exact.

Dims that PyTensor does not know at build time are traced as JAX symbolic dimensions
(``jax.export.symbolic_shape``), so an output keeps every static dim that is truly
constant, and each unknown output dim comes back as an expression of input dims that
``infer_shape`` turns into a PyTensor graph.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.type import TensorType

from pymc_jaxops._jit import traced_once

Dim = int | str  # a static size, or a symbolic expression over input dims

__all__ = [
    "Dim",
    "InputDim",
    "OutputSignature",
    "dim_to_pytensor",
    "explain_trace_error",
    "infer_outputs",
    "mentions_symbolic_dim",
    "rename_dims",
    "symbolic_shape",
]

_SYMBOL = re.compile(r"\bin(\d+)d(\d+)\b")
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


@dataclass(frozen=True, order=True)
class InputDim:
    """Axis ``axis`` of flat input ``arg``, a size PyTensor does not know at build time.

    JAX traces it as the symbolic dimension named :attr:`symbol`; output dims are
    expressions over such names (see :func:`dim_to_pytensor`).
    """

    arg: int
    axis: int

    @property
    def symbol(self) -> str:
        """The name JAX traces this dim as (a valid symbolic-dim identifier)."""
        return f"in{self.arg}d{self.axis}"

    @classmethod
    def from_symbol(cls, name: str) -> InputDim | None:
        """The dim a symbol names, or ``None`` for any other name (e.g. a shared symbol)."""
        m = _SYMBOL.fullmatch(name)
        return cls(int(m[1]), int(m[2])) if m else None

    def shifted(self, axes: int) -> InputDim:
        """The same dim after ``axes`` leading axes are added to its input."""
        return InputDim(self.arg, self.axis + axes)


def symbolic_shape(arg: int, shape: Sequence[int | None]) -> tuple[Dim, ...]:
    """Input ``arg``'s shape with each unknown size replaced by its :class:`InputDim` symbol."""
    return tuple(s if s is not None else InputDim(arg, d).symbol for d, s in enumerate(shape))


@dataclass(frozen=True)
class OutputSignature:
    """What tracing a flat JAX function told us about its outputs.

    ``dims[k][j]`` is an int for a static dim, a string expression for a symbolic one, or
    ``None`` when the shape could only be found from concrete input sizes.
    ``sources`` maps each symbol to the input dim that defines it.
    """

    types: tuple[TensorType, ...]
    dims: tuple[tuple[Dim | None, ...], ...]
    sources: tuple[tuple[str, InputDim], ...]
    treedef: object  # jax PyTreeDef of the outputs, as the user function returned them


def rename_dims(expr: Dim | None, rename: Mapping[str, str]) -> Dim | None:
    """``expr`` with every symbol in ``rename`` replaced by its new name."""
    if isinstance(expr, str):
        return _IDENTIFIER.sub(lambda m: rename.get(m[0], m[0]), expr)
    return expr


def mentions_symbolic_dim(text: str) -> bool:
    """Whether an error message is about a symbolic dim (JAX's own words, or our symbols)."""
    return bool(re.search(r"_DimExpr|symbolic dim", text) or _SYMBOL.search(text))


# JAX names the function it traced (``_trace``'s ``flat``) and its flat inputs ``args[k]``.
_TRACED_FUNCTION = re.compile(
    r"The error occurred while tracing the function flat at \S+ for \w+\. ?"
)
_TRACED_ARGUMENT = re.compile(r"\bargs\[(\d+)\]")


def explain_trace_error(message: str, names: Sequence[str]) -> str:
    """A JAX tracing error of :func:`infer_outputs` in the user's words.

    ``names[i]`` names flat input ``i``: input dims become ``name.shape[axis]``, JAX's
    ``args[i]`` becomes ```name```, and the mention of our tracing helper is dropped.
    """
    message = _SYMBOL.sub(lambda m: f"{names[int(m[1])]}.shape[{m[2]}]", message)
    message = _TRACED_ARGUMENT.sub(lambda m: f"`{names[int(m[1])]}`", message)
    return _TRACED_FUNCTION.sub("", message)


def _structs(input_types: Sequence[TensorType], shared: bool):
    """ShapeDtypeStructs for the inputs, unknown dims replaced by symbols."""
    unknown = [
        (i, d) for i, t in enumerate(input_types) for d, s in enumerate(t.shape) if s is None
    ]
    names = ["n"] if shared else [InputDim(i, d).symbol for i, d in unknown]
    symbols = (
        dict(zip(names, jax.export.symbolic_shape(", ".join(names)), strict=True))
        if unknown
        else {}
    )
    structs: list[jax.ShapeDtypeStruct] = []
    sources: dict[str, InputDim] = {}
    for i, t in enumerate(input_types):
        shape = []
        for d, s in enumerate(t.shape):
            if s is None:
                name = "n" if shared else InputDim(i, d).symbol
                sources.setdefault(name, InputDim(i, d))
                shape.append(symbols[name])
            else:
                shape.append(s)
        structs.append(jax.ShapeDtypeStruct(tuple(shape), np.dtype(t.dtype)))
    return structs, sources


def _as_dim(d) -> Dim:
    return int(d) if isinstance(d, int | np.integer) else str(d)


def _trace(fn: Callable, structs) -> tuple[list, object]:
    """Abstractly evaluate ``fn`` (any pytree out); return its flat outputs and treedef.

    Through :func:`pymc_jaxops._jit.traced_once`: traced again at these types (a gradient,
    the whole program) it does not run the user's Python again.
    """
    nested = traced_once(fn)
    try:
        return _trace_flat(nested, structs)
    except Exception:
        if nested is fn:
            raise
    return _trace_flat(fn, structs)  # again, for JAX's error about the flat arguments


def _trace_flat(fn: Callable, structs) -> tuple[list, object]:
    captured = {}

    def flat(*args):  # named in JAX's errors: see explain_trace_error
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


def dim_to_pytensor(expr: str, env: Mapping[str, Any]):
    """Evaluate a JAX symbolic-dim expression (its documented string form) in PyTensor.

    ``env`` maps each symbol to its PyTensor value (see :attr:`OutputSignature.sources`).
    """

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
