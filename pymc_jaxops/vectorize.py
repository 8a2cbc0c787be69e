"""Vectorizing a graph turns a ``JaxOp`` into one ``JaxOp`` running ``jax.vmap`` of its function.

PyTensor vectorizes a graph (``vectorize_graph``, ``pt.vectorize``,
``pm.sampling.forward.vectorize_over_posterior``) node by node through the
node-vectorizing dispatcher; for an Op it does not know, the fallback wraps the node in
a ``Blockwise`` that calls the Op once per batch item: one JAX call (and one host/device
round trip) per item. Registering ``JaxOp`` there gives instead one ``JaxOp`` whose
function is the ``jax.vmap`` of the original: one call for the whole batch, which XLA
compiles as a batched computation.

A value-and-grad node whose differentiated inputs are all batched becomes a value-and-grad
node of the vmapped forward Op, so ``rewrites.py`` pairs it with the vectorized forward
node (one forward and one backward pass for the batch).

The new Op is an ordinary ``JaxOp``: equal to itself when rebuilt (its function is a
frozen dataclass), differentiable through the generic value-and-grad Op, dispatched to
JAX, and picklable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import pytensor.tensor as pt
from pytensor.graph.basic import Apply, Variable
from pytensor.tensor.extra_ops import broadcast_shape
from pytensor.tensor.type import TensorType

from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp
from pymc_jaxops._shapes import Dim, InputDim, OutputSignature, rename_dims
from pymc_jaxops._upstream.pytensor import register_vectorize

__all__: list[str] = []


@dataclass(frozen=True)
class _Vmapped:
    """``fn`` mapped over ``n_batch`` leading axes of the inputs flagged in ``batched``.

    Unflagged inputs are shared by every batch item (``in_axes=None``): data such as the
    HMM's emissions is never copied per item.
    """

    fn: Callable
    n_batch: int
    batched: tuple[bool, ...]

    @property
    def __name__(self) -> str:
        return f"vmap({getattr(self.fn, '__name__', 'jax_fn')})"

    def __call__(self, *args):
        mapped = self.fn
        in_axes = tuple(0 if b else None for b in self.batched)
        for _ in range(self.n_batch):
            mapped = jax.vmap(mapped, in_axes=in_axes)
        return tuple(mapped(*args))


def _static_batch_shape(shapes: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
    """Broadcast static batch shapes (already left-padded to one length) as NumPy would."""
    out: list[int | None] = []
    for dims in zip(*shapes, strict=True):
        known = {d for d in dims if d not in (1, None)}
        if known:
            out.append(known.pop() if len(known) == 1 else None)
        else:
            out.append(None if None in dims else 1)
    return tuple(out)


def _broadcast_batch(inputs, batch_ndims, n_batch):
    """Give every batched input the full common batch shape.

    As for PyTensor's ``Blockwise``, only missing leading dims and dims of static length 1
    broadcast; ``pt.broadcast_to`` is a view in PyTensor and is fused away by XLA.
    """
    padded = {
        i: (1,) * (n_batch - b) + tuple(x.type.shape[:b])
        for i, (x, b) in enumerate(zip(inputs, batch_ndims, strict=True))
        if b > 0
    }
    static = _static_batch_shape(list(padded.values()))
    stretched = [
        i
        for i, p in padded.items()
        if any(d == 1 and s != 1 for d, s in zip(p, static, strict=True))
    ]
    if not stretched:
        return list(inputs), static
    # Static lengths, not `x.shape[d]`, so broadcast_shape knows which dims are 1.
    target = broadcast_shape(
        *[
            tuple(
                d if d is not None else inputs[i].shape[k - n_batch + batch_ndims[i]]
                for k, d in enumerate(p)
            )
            for i, p in padded.items()
        ],
        arrays_are_shapes=True,
    )
    out = list(inputs)
    for i in stretched:
        x = inputs[i]
        out[i] = pt.broadcast_to(x, (*target, *x.shape[batch_ndims[i] :]))
    return out, static


def _batched_signature(
    sig: OutputSignature, batched: tuple[bool, ...], n_batch: int, batch_static
) -> OutputSignature:
    """The core signature with ``n_batch`` leading dims on every output.

    Symbols are renamed after the input dim they now come from (:class:`InputDim`), so the
    names stay unique when a value-and-grad Op adds its own (it uses the same scheme).
    """
    first = batched.index(True)
    shift = [n_batch if b else 0 for b in batched]
    moved = {name: dim.shifted(shift[dim.arg]) for name, dim in sig.sources}
    rename = {name: dim.symbol for name, dim in moved.items()}
    sources = {dim.symbol: dim for dim in moved.values()}
    batch_dims: list[Dim] = []
    for k, size in enumerate(batch_static):
        if size is None:
            dim = InputDim(first, k)
            sources[dim.symbol] = dim
            batch_dims.append(dim.symbol)
        else:
            batch_dims.append(size)

    return OutputSignature(
        types=tuple(TensorType(t.dtype, shape=(*batch_static, *t.shape)) for t in sig.types),
        dims=tuple((*batch_dims, *(rename_dims(d, rename) for d in dims)) for dims in sig.dims),
        sources=tuple(sorted(sources.items())),
        treedef=None,
    )


def _vectorize_jax_op(op: JaxOp, node: Apply, *batched_inputs: Variable) -> Apply:
    batched_inputs = tuple(pt.as_tensor_variable(x) for x in batched_inputs)
    batch_ndims = [
        new.type.ndim - old.type.ndim for new, old in zip(batched_inputs, node.inputs, strict=True)
    ]
    n_batch = max(batch_ndims, default=0)
    if n_batch == 0:
        return op.make_node(*batched_inputs)
    inputs, batch_static = _broadcast_batch(batched_inputs, batch_ndims, n_batch)
    batched = tuple(b > 0 for b in batch_ndims)
    vmapped = JaxOp(
        _Vmapped(op.fn, n_batch, batched),
        [x.type for x in inputs],
        _batched_signature(op.signature, batched, n_batch, batch_static),
        name=f"vmap({op.name})",
        input_names=op.input_names,
    )
    return vmapped.make_node(*inputs)


def _vectorize_value_and_grad(
    op: JaxValueAndGradOp, node: Apply, *batched_inputs: Variable
) -> Apply:
    """A value-and-grad node of the vmapped forward Op, so the rewrite can pair them.

    Then ``rewrites.py`` splits (or fuses) the vectorized forward and value-and-grad nodes as
    it does unbatched ones: one forward and one backward pass for the batch. This needs every
    differentiated input batched (a shared input's per-item gradient is not the gradient of
    the vmapped function, which sums over the batch); otherwise the node becomes one
    ``JaxOp`` running the ``jax.vmap`` of the value-and-grad function, as any ``JaxOp`` does.
    """
    batched_inputs = tuple(pt.as_tensor_variable(x) for x in batched_inputs)
    n_in = len(op.base.input_types)
    primals, cotangents = batched_inputs[:n_in], batched_inputs[n_in:]
    batch_ndims = [
        new.type.ndim - old.type.ndim for new, old in zip(primals, node.inputs[:n_in], strict=True)
    ]
    n_batch = max(batch_ndims, default=0)
    ct_batch = [
        new.type.ndim - old.type.ndim
        for new, old in zip(cotangents, node.inputs[n_in:], strict=True)
    ]
    differentiated = [b for b, w in zip(batch_ndims, op.wrt_mask, strict=True) if w]
    if (
        n_batch == 0
        or any(b != n_batch for b in differentiated)
        or max(ct_batch, default=0) > n_batch
    ):
        return _vectorize_jax_op(op, node, *batched_inputs)
    forward = _vectorize_jax_op(op.base, op.base.make_node(*node.inputs[:n_in]), *primals)
    paired = [
        pt.as_tensor_variable(o) for o, m in zip(forward.outputs, op.ct_mask, strict=True) if m
    ]
    # Each cotangent with the batch shape of the output it belongs to.
    full = [
        ct if ct.type.ndim == out.type.ndim else pt.broadcast_to(ct, out.shape)
        for ct, out in zip(cotangents, paired, strict=True)
    ]
    full = [
        out.type.filter_variable(ct, allow_convert=True)
        for ct, out in zip(full, paired, strict=True)
    ]
    vg = JaxValueAndGradOp(forward.op, op.ct_mask, op.wrt_mask)
    return vg.make_node(*forward.inputs, *full)


register_vectorize(JaxOp, _vectorize_jax_op)
register_vectorize(JaxValueAndGradOp, _vectorize_value_and_grad)
