"""Run a whole compiled graph around our JAX Ops as one XLA program on the C or Numba backend.

On PyMC's default backend every node of the logp+dlogp graph other than our Op (transforms,
priors, the likelihood on the Op's output, the raveled gradient) runs as a C thunk, and each
call crosses the NumPy/JAX boundary once per JAX Op. When a graph holds one of our Ops and
*every* node has a JAX implementation, :data:`absorb_into_xla` replaces the graph by one
:class:`XlaGraphOp` that runs it as a single jitted JAX function — what ``mode="JAX"`` does,
without the user asking.

It is **on by default** in every mode with PyTensor's C backend (``fast_run``, the mode
``pm.sample()`` compiles with on pymc 5) and every mode with its Numba backend (the default
of pytensor 3 / pymc 6): there the compiled Numba function enters Python once per call, to
launch the XLA executable. Switch it off for one function with
``mode=get_default_mode().excluding("pymc_jaxops_absorb")`` (also accepted by
``model.logp_dlogp_function(mode=...)`` and ``pm.sample(compile_kwargs={"mode": ...})``), or
for the whole process with ``PYTENSOR_FLAGS=optimizer_excluding=pymc_jaxops_absorb``.

A graph is absorbed only where JAX answers what the C backend answers, for every input the
compiled function can be called with: the same exception where C raises, no nan where C
gives a number or ±inf. The rule goes by Op family (the table is in
``docs/architecture.md``, "Which graphs are absorbed"); a graph holding any of these is
left on its backend:

* a ``Check``/``Assert`` node (JAX skips it), before or after the JAX-mode rewrites. The
  rewrite runs after PyTensor's ``canonicalize`` pass, where PyMC's compile has turned
  parameter checks into ``switch(cond, logp, -inf)``, which JAX keeps;
* an index JAX could clamp where C raises ``IndexError``: one known only at run time
  (``x[idx]`` with a ``pm.Data`` ``idx``), or a constant one into an axis whose length is
  not fixed when the graph is compiled (``x[3]`` of a ``pm.Data`` ``x``: ``pm.set_data`` can
  shorten it). Slices clamp in both backends;
* integer ``//`` and ``%`` by anything but a nonzero constant (C raises
  ``ZeroDivisionError``), also inside fused ``Composite`` nodes; ``//`` of floats and ``**``
  of integers (other values at ±inf, and for negative exponents); casts of floats to
  integers (C wraps nan, ±inf and out-of-range values, XLA saturates them);
* linear algebra (``inv``, ``solve``, ``cholesky``, ``det``, decompositions: every Op of
  PyTensor's ``nlinalg``/``slinalg``/``linalg`` modules, also under ``Blockwise``): on
  singular input C raises ``LinAlgError`` or returns nan where JAX returns ±inf;
* special functions that JAX computes with other algorithms than C (incomplete gamma and
  beta functions, digamma and its derivatives, Bessel functions, ...): only ``erf``,
  ``erfc``, ``erfinv``, ``gamma``, ``gammaln``, ``i0``, ``log1mexp``, ``sigmoid`` and
  ``softplus`` of ``pytensor.scalar.math`` are absorbed, with every Op of
  ``pytensor.scalar.basic`` not named above;
* the inner graphs of ``OpFromGraph`` and ``Scan`` nodes are held to the same rule;
* random draws and shared-variable updates (``update_mapping``) keep their C semantics.

Each XLA call runs in the x64 mode the graph's types (and its wrapped functions' recorded
modes) need, whatever the global switch. If JAX cannot trace the graph (an Op whose JAX
implementation needs static shapes), the Op compiles the original graph with the C backend
and uses it from then on (for one call only, if JAX ran it before at other shapes).

What remains is rounding: XLA may order floating-point operations differently from the C
backend (and sums float32 values in float32, where PyTensor's C sum accumulates in
float64), so values agree to rounding, not bit for bit, and a sampler's path for a given
seed can differ from the C backend's.

Examples
--------
>>> import jax.numpy as jnp
>>> import numpy as np
>>> import pytensor
>>> import pytensor.tensor as pt
>>> from pymc_jaxops import as_pytensor_op
>>> x = pt.vector("x")
>>> y = as_pytensor_op(lambda v: jnp.tanh(v))(x)
>>> cost = pt.sum((y - 0.5) ** 2) + pt.sum(pt.exp(x)) - pt.log(pt.sum(x**2))
>>> f = pytensor.function([x], [cost, pt.grad(cost, x)])
>>> [type(n.op).__name__ for n in f.maker.fgraph.apply_nodes]
['XlaGraphOp']
>>> round(float(f(np.array([0.1, -0.2]))[0]), 6)
5.566232
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytensor.scalar.basic as ps
from pytensor import function
from pytensor.compile.mode import get_mode
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.op import HasInnerGraph, Op
from pytensor.graph.replace import clone_replace
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.graph.traversal import applys_between
from pytensor.link.jax.dispatch import jax_funcify, jax_typify
from pytensor.link.utils import fgraph_to_python
from pytensor.raise_op import CheckAndRaise
from pytensor.scalar.basic import Cast, Composite, IntDiv, Mod, Pow
from pytensor.scalar.math import (
    I0,
    Erf,
    Erfc,
    Erfinv,
    Gamma,
    GammaLn,
    Log1mexp,
    Sigmoid,
    Softplus,
)
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.subtensor import IncSubtensor, Subtensor, indices_from_subtensor
from pytensor.tensor.type import TensorType
from pytensor.tensor.type_other import NoneTypeT, SliceType

from pymc_jaxops import _programs
from pymc_jaxops._jit import jitted as _jitted
from pymc_jaxops._ops import JaxOp, JaxValueAndGradOp, for_this_machine_now
from pymc_jaxops._plans import Race
from pymc_jaxops._residuals import JaxBackwardOp
from pymc_jaxops._upstream.pytensor import (
    ADVANCED_INC_SUBTENSOR,
    ADVANCED_SUBTENSOR,
    COMPILING,
    object_mode_launch,
    one_node_runs_in_python,
    register_dispatch,
    register_rewrite,
)
from pymc_jaxops._vjp import PLAN
from pymc_jaxops.precision import needs_x64

__all__ = ["TAG", "XlaGraphOp", "absorb_into_xla"]

_logger = logging.getLogger("pymc_jaxops")

TAG = "pymc_jaxops_absorb"
"""The rewrite tag of the absorption (``Mode.excluding(TAG)`` switches it off)."""

_MIN_OTHER_NODES = 4  # below this there is nothing to gain over the Op's own call


# Rebuilt in each process; the chosen plan ("_chosen") travels to processes on this machine.
_PROCESS_LOCAL = frozenset(
    {
        "_run",
        "_lock",
        "_fallback",
        "_fgraph",
        "_ok",
        "_launch_key",
        "_plan_race",
        "_settled",
        "_canon",
        "_funcified",
    }
)


class XlaGraphOp(Op):
    """A whole graph (JAX-mode rewritten) run as one jitted JAX function.

    ``inner_inputs``/``inner_outputs`` are the graph after PyTensor's JAX-mode rewrites;
    ``fallback_inputs``/``fallback_outputs`` the graph as it came, compiled with the C
    backend if JAX cannot trace the first.
    """

    def __init__(self, inner: FunctionGraph, original: FunctionGraph):
        self.inner_inputs, self.inner_outputs = list(inner.inputs), list(inner.outputs)
        self.fallback_inputs = list(original.inputs)
        self.fallback_outputs = list(original.outputs)
        self._key = uuid.uuid4().hex  # kept by pickled copies: they share one executable
        self._lock = threading.Lock()
        self._dtypes = tuple(np.dtype(o.type.dtype) for o in self.inner_outputs)
        self._layout = _packed_layout(self.inner_outputs)

    def __str__(self) -> str:
        return f"XlaGraphOp{{{len(self.inner_outputs)} outputs}}"

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in _PROCESS_LOCAL and (k != "_chosen" or for_this_machine_now())
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def fgraph(self) -> FunctionGraph:
        """The inner graph (read by ``multiprocess.py``: this Op runs JAX in the process)."""
        try:
            return self.__dict__["_fgraph"]
        except KeyError:
            fgraph = FunctionGraph(self.inner_inputs, self.inner_outputs, clone=True)
            self.__dict__["_fgraph"] = fgraph
            return fgraph

    def make_node(self, *inputs: Variable) -> Apply:
        return Apply(self, list(inputs), [o.type() for o in self.inner_outputs])

    def _program(self, plan: str) -> Callable:
        """The jitted program of ``plan`` (see ``_VARIANTS``)."""
        runs = self.__dict__.setdefault("_run", {})
        try:
            graph_fn, mode = runs[plan]
        except KeyError:
            key, _ = self._canonical()
            fgraph = self.fgraph
            # The x64 mode the graph's types need (a float64 accumulator of a float32 sum
            # included) and its wrapped functions recorded, scoped to each call.
            dtypes = [v.type.dtype for v in (*fgraph.inputs, *fgraph.variables)]
            dtypes += [n.op.acc_dtype for n in fgraph.apply_nodes if hasattr(n.op, "acc_dtype")]
            recorded = [n.op.x64_mode for n in fgraph.apply_nodes if isinstance(n.op, JaxOp)]
            mode = needs_x64(dtypes) or any(recorded)
            # Shared with equal graphs and with copies unpickled in this process (a chain
            # thread's step): the jitted program is found in the cache, not compiled again.
            graph_fn = _programs.graph_fn(key, plan, lambda: self._graph_fn(plan))
            graph_fn, mode = runs.setdefault(plan, (graph_fn, mode))
            _programs.hold(self, graph_fn, mode, key)
        # The executable lives in the bounded cache, not on this Op, which PyTensor's
        # rewriters keep for the life of the process.
        return _jitted(graph_fn, mode)

    def _graph_fn(self, plan: str) -> Callable:
        # One JAX function serves every plan: the plan is read when JAX traces it.
        funcified = self.__dict__.get("_funcified")
        if funcified is None:
            funcified = self.__dict__.setdefault("_funcified", _funcify(self.fgraph))
        graph_fn = _traced_in(plan, funcified)
        return _packing(graph_fn) if self._layout is not None else graph_fn

    def _canonical(self) -> tuple[str, dict[str, str]]:
        """The key this graph's programs go by (an equal graph's, if one ran before) and the
        plan chosen for them."""
        found = self.__dict__.get("_canon")
        if found is None:
            found = _programs.canonical(
                self._key, self._print_hash(), self.inner_inputs, self.inner_outputs
            )
            found = self.__dict__.setdefault("_canon", found)
        return found

    def _print_hash(self) -> str:
        found = self.__dict__.get("_print")
        if found is None:
            found = self.__dict__.setdefault("_print", _programs.fingerprint(self.inner_outputs))
        return found

    def _race(self) -> Race:
        race = self.__dict__.get("_plan_race")
        if race is None:
            plans = _VARIANTS if _has_gradient(self.fgraph) else _VARIANTS[:1]
            _, shared = self._canonical()
            chosen = self.__dict__.get("_chosen") or shared.get("plan")
            race = self.__dict__.setdefault("_plan_race", Race(plans[0], plans, chosen))
        return race

    def _thunks(self, inputs: tuple) -> dict[str, Callable[[], object]]:
        def thunk(plan: str) -> Callable[[], object]:
            return lambda: self._program(plan)(*inputs)

        return {plan: thunk(plan) for plan in self._race().names}

    def _fallback_fn(self) -> Callable:
        # PyTensor's compile lock first, then this Op's: the order every compile takes them.
        with COMPILING, self._lock:
            if "_fallback" not in self.__dict__:
                inputs = [i.type() for i in self.fallback_inputs]
                outs = clone_replace(
                    self.fallback_outputs,
                    replace=dict(zip(self.fallback_inputs, inputs, strict=True)),
                )
                # PyTensor's C backend whatever the default mode, without this rewrite.
                mode = get_mode("CVM").excluding(TAG)
                self.__dict__["_fallback"] = function(
                    inputs, outs, mode=mode, on_unused_input="ignore"
                )
            return self.__dict__["_fallback"]

    def _run_fallback(self, inputs) -> list:
        fn = self._fallback_fn()
        with self._lock:  # one storage per Function: callers (threads) take turns
            return fn(*inputs)

    def perform(self, node, inputs, output_storage):
        for storage, value in zip(output_storage, self.outputs_of(inputs), strict=True):
            storage[0] = value

    def outputs_of(self, inputs) -> list[np.ndarray]:
        """The outputs for ``inputs``: writable arrays of the declared dtypes, as the C
        thunks' outputs are."""
        values = None if self.__dict__.get("_jax_failed") else self._run_jax(inputs)
        if values is None:
            return list(self._run_fallback(inputs))
        if self._layout is not None:
            # One buffer for all outputs: one copy out of XLA, not one per output (a few
            # µs per call, which a 60 µs model notices). The outputs are disjoint views of it.
            flat = np.asarray(values).astype(self._dtypes[0])
            return [
                flat[start:stop] if shape is None else flat[start:stop].reshape(shape)
                for start, stop, shape in self._layout
            ]
        # (A copy of np.asarray's view: np.array(value, dtype=...) took ~5 µs more per output.)
        arrays = [np.asarray(value) for value in values]
        return [
            a.copy() if a.dtype == dtype else a.astype(dtype)
            for a, dtype in zip(arrays, self._dtypes, strict=True)
        ]

    def launch_key(self) -> str:
        """The key by which Numba's compiled code finds this Op in this process.

        It is the same in every process that builds the same graph in the same order (so
        Numba's disk cache serves a chain worker or a new session), and never names two Ops
        in one process: equal fingerprints are numbered, and numbers are never reused.
        """
        with _LAUNCH_LOCK:
            key = self.__dict__.get("_launch_key")
            if key is None:
                fingerprint = self._print_hash()
                number = _FINGERPRINTS_SEEN.get(fingerprint, 0)
                _FINGERPRINTS_SEEN[fingerprint] = number + 1
                key = f"{fingerprint}-{number}"
                self.__dict__["_launch_key"] = key
                _LAUNCHABLE[key] = self
            return key

    def _run_jax(self, inputs) -> Any:
        """The finished JAX outputs (one packed array with a layout), or None if JAX failed."""
        try:
            settled = self.__dict__.get("_settled")
            program = settled() if settled is not None else None
            if program is None:
                race = self._race()
                program = self._program(race.plan(tuple(inputs), self._thunks))
                if race.winner is not None:
                    self.__dict__["_chosen"] = race.winner  # travels to chain processes here
                    self._canonical()[1]["plan"] = race.winner  # and to equal graphs
                    # Weakly, as the jit cache owns it: found without a lock on each call.
                    self.__dict__["_settled"] = weakref.ref(program)
            values = program(*inputs)
            # Waiting here, then converting, took 5-15 µs less per call than letting
            # np.asarray wait (measured on the MLP of benchmarks/bench_one_pass.py). One
            # packed array's own method skips jax.block_until_ready's tree walk.
            if self._layout is not None:
                values.block_until_ready()
            else:
                jax.block_until_ready(values)
        except Exception as error:
            # JAX could not trace this graph (an Op whose JAX implementation needs static
            # shapes, say). If it never could, use the C backend from now on; if it did
            # before (new shapes), for this call. An error of the computation itself is
            # raised again by the C backend.
            if not self.__dict__.get("_ok"):
                self.__dict__["_jax_failed"] = True
            _logger.debug("pymc_jaxops: %s runs on the C backend: %s", self, error)
            return None
        self.__dict__["_ok"] = True
        return values


_VARIANTS = ("fused", "two calls")
"""How an absorbed graph runs its wrapped functions' gradients: as PyTensor's JAX-mode
rewrites left them (one value-and-grad pass per function, as ``jax.value_and_grad`` of
the model would), or each as a plain forward pass and a gradient-only pass (``_vjp.PLAN``).
Which is faster depends on the function (on some ``lax.scan`` HMMs, the second)."""


def _funcify(fgraph: FunctionGraph) -> Callable:
    """``jax_funcify(fgraph)``, its array constants moved to the device without compiling."""
    return fgraph_to_python(
        fgraph, jax_funcify, type_conversion_fn=_typify, fgraph_name="jax_funcified_fgraph"
    )


def _typify(data: Any, dtype: Any = None, **kwargs: Any) -> Any:
    # PyTensor's jnp.array(data) compiles a staging program per shape and dtype (4-9 ms
    # each: 40 ms of a dynamax HMM model's first call); device_put copies, as it does, into
    # the same kind of array, its dtype canonicalized the same way.
    if isinstance(data, np.ndarray) and data.ndim > 0:
        return jax.device_put(data if dtype is None else np.asarray(data, dtype=dtype))
    return jax_typify(data, dtype=dtype, **kwargs)


def _has_gradient(fgraph: FunctionGraph) -> bool:
    """Whether a wrapped function's gradient runs in the graph (else there is one plan)."""
    return any(
        (isinstance(n.op, JaxValueAndGradOp) and any(n.op.wrt_mask))
        or isinstance(n.op, JaxBackwardOp)
        for n in fgraph.apply_nodes
    )


def _traced_in(plan: str, graph_fn: Callable) -> Callable:
    """``graph_fn``, traced under ``plan`` (see ``_vjp.PLAN``)."""
    if plan == _VARIANTS[0]:
        return graph_fn

    def traced(*args):
        token = PLAN.set(plan)
        try:
            return graph_fn(*args)
        finally:
            PLAN.reset(token)

    traced.__name__ = getattr(graph_fn, "__name__", "graph")
    return traced


def _packed_layout(
    outputs: list[Variable],
) -> tuple[tuple[int, int, tuple[int, ...] | None], ...] | None:
    """Where each output lies in one flat buffer, if the outputs can share one.

    They can when there are several, all of one dtype and all of static shape (logp and its
    raveled gradient, as PyMC's samplers compile them).
    """
    types = [o.type for o in outputs]
    if len(types) < 2 or len({t.dtype for t in types}) > 1:
        return None
    if any(d is None for t in types for d in t.shape):
        return None
    layout, start = [], 0
    for t in types:
        shape = tuple(int(d) for d in t.shape)
        stop = start + int(np.prod(shape, dtype=np.int64))
        layout.append((start, stop, None if len(shape) == 1 else shape))  # 1-D: no reshape
        start = stop
    return tuple(layout)


def _packing(graph_fn: Callable) -> Callable:
    """``graph_fn`` with its outputs raveled into one array (see ``_packed_layout``)."""

    def packed(*args):
        return jnp.concatenate([jnp.ravel(o) for o in graph_fn(*args)])

    packed.__name__ = getattr(graph_fn, "__name__", "packed")
    return packed


def _detached(fgraph: FunctionGraph) -> FunctionGraph:
    """A copy of ``fgraph`` whose inputs are plain variables, shared ones included.

    The Op receives every value as an input; a stored shared variable would keep the
    user's data alive with the Op (which PyTensor's rewriters keep) and travel in its pickles.
    """
    inputs = [i.type() for i in fgraph.inputs]
    outputs = clone_replace(
        list(fgraph.outputs), replace=dict(zip(fgraph.inputs, inputs, strict=True))
    )
    return FunctionGraph(inputs, outputs, clone=False)


# The rule: absorb a graph only where JAX answers what the C backend answers, for every
# input the compiled function can be called with. Op families, and why each stays on the C
# backend, are in docs/architecture.md ("Which graphs are absorbed"). A family not named
# below is absorbed: structural Ops, reductions, products, sorting and the like, whose JAX
# implementations give C's values (nan and ±inf included).

_LINALG_MODULES = ("pytensor.tensor.nlinalg", "pytensor.tensor.slinalg", "pytensor.tensor.linalg")
_INDEXING = (Subtensor, IncSubtensor, *ADVANCED_SUBTENSOR, *ADVANCED_INC_SUBTENSOR)

_SAME_SPECIAL_VALUES: tuple[type, ...] = (
    Erf,
    Erfc,
    Erfinv,
    Gamma,
    GammaLn,
    I0,
    Log1mexp,
    Sigmoid,
    Softplus,
)
"""Special functions whose JAX implementation gives C's value at every special input (zero,
negative integers, ±inf, nan, overflow); ``tests/test_absorb_safety.py`` checks each."""


def _numbers_could_change(fgraph: FunctionGraph) -> bool:
    """Whether JAX could answer differently from the C backend for some input.

    Different numbers, a nan where C gives a number or -inf, or no exception where C
    raises one. Such a graph stays on its backend (the reason is logged at debug level).
    """
    reason = _reason_for_c(fgraph.apply_nodes)
    if reason is not None:
        _logger.debug("pymc_jaxops: graph not absorbed: %s", reason)
    return reason is not None


def _reason_for_c(nodes: Iterable[Apply]) -> str | None:
    for node in nodes:
        reason = _node_reason(node)
        if reason is not None:
            return reason
    return None


def _node_reason(node: Apply) -> str | None:
    """Why this node must run on the C backend, by its Op's family; None if JAX may run it."""
    op = node.op
    core = op.core_op if isinstance(op, Blockwise) else op
    if isinstance(core, CheckAndRaise):
        return f"{op}: JAX skips the check"
    if type(core).__module__.startswith(_LINALG_MODULES):
        # On singular input C raises LinAlgError (inv) or returns nan (solve, cholesky)
        # where JAX returns ±inf.
        return f"{op}: linear algebra, which raises or gives nan in C where JAX gives inf"
    if isinstance(op, _INDEXING):
        return _index_reason(node)
    if isinstance(core, _INDEXING):  # batched: its indices are not the node's inputs
        return f"{op}: a batched index"
    if isinstance(op, Elemwise):
        return _scalar_reason(op.scalar_op, node.inputs, node.outputs)
    if isinstance(core, HasInnerGraph):  # OpFromGraph, Scan: JAX runs their inner graphs
        return _reason_for_c(applys_between(core.inner_inputs, core.inner_outputs))
    return None


def _index_reason(node: Apply) -> str | None:
    """Why an indexing node needs C: JAX clamps an out-of-range index where C raises.

    Slices clamp in both. An integer or boolean index is safe only when it is a constant
    inside the indexed axis's static length: a length known only at run time (a
    ``pm.Data`` that ``pm.set_data`` can shorten, or any input of unknown shape) counts as a
    run-time index.
    """
    x = node.inputs[0]
    incs = isinstance(node.op, (IncSubtensor, *ADVANCED_INC_SUBTENSOR))
    flat: list[Any] = node.inputs[2 if incs else 1 :]  # after x (and the increment)
    if any(not isinstance(i, Constant) for i in flat):
        return f"{node.op}: an index known only at run time"
    idx_list = getattr(node.op, "idx_list", None)
    indices: Iterable[Any] = flat if idx_list is None else indices_from_subtensor(flat, idx_list)
    axis = 0
    for index in indices:
        if isinstance(index, slice) or isinstance(index.type, SliceType):
            axis += 1
            continue
        if isinstance(index.type, NoneTypeT):  # np.newaxis: no axis of x
            continue
        value = np.asarray(index.data)
        width = value.ndim if value.dtype == bool else 1
        lengths = x.type.shape[axis : axis + width]
        if not _inside(value, lengths):
            return f"{node.op}: index {value.tolist()} into an axis of length {lengths}"
        axis += width
    return None


def _inside(value: np.ndarray, lengths: tuple[int | None, ...]) -> bool:
    """Whether a constant index (or mask) fits axes of these static lengths, whatever the input."""
    known = tuple(n for n in lengths if n is not None)
    if not known or len(known) < len(lengths):
        return False
    if value.dtype == bool:
        return value.shape == known
    (n,) = known
    return value.size == 0 or bool(-n <= value.min() and value.max() < n)


def _scalar_reason(op: Op, inputs: list, outputs: list) -> str | None:
    """Why an elementwise scalar Op needs C; ``inputs`` are the outer graph's where known."""
    if isinstance(op, Composite):  # walked with its inputs mapped to the outer constants
        outer = dict(zip(op.inner_inputs, inputs, strict=True))
        for inner in applys_between(op.inner_inputs, op.inner_outputs):
            mapped = [outer.get(i, i) for i in inner.inputs]
            reason = _scalar_reason(inner.op, mapped, inner.outputs)
            if reason is not None:
                return reason
        return None
    out_dtype = np.dtype(outputs[0].type.dtype)
    integer_out = out_dtype.kind in "iub"
    if isinstance(op, IntDiv) and not integer_out:
        return f"{op} on floats: JAX's floor_divide gives nan for ±inf, C gives ±inf"
    if isinstance(op, IntDiv | Mod) and integer_out and not _nonzero_constant(inputs[1]):
        return f"{op} on integers: C raises ZeroDivisionError, JAX returns a number"
    if isinstance(op, Pow) and integer_out:
        return f"{op} on integers: C computes it in float64, JAX exactly (negative exponents)"
    if isinstance(op, Cast) and integer_out and np.dtype(inputs[0].type.dtype).kind in "fc":
        return f"{op} of floats: nan, ±inf and out-of-range values wrap in C, saturate in JAX"
    if type(op).__module__ == ps.__name__ or isinstance(op, _SAME_SPECIAL_VALUES):
        return None
    # Incomplete gamma/beta, digamma and the like: other algorithms in JAX, with other
    # values at poles and in the tails (digamma's poles are nan in JAX, +inf in C; JAX's
    # betainc rounds a tail to exactly 1, where PyMC's log1mexp gradient is nan).
    return f"{op}: a special function that JAX computes otherwise than C"


def _nonzero_constant(var: Variable) -> bool:
    return isinstance(var, Constant) and bool(np.all(np.asarray(var.data) != 0))


class _Absorb(GraphRewriter):
    def add_requirements(self, fgraph):
        pass

    def apply(self, fgraph):
        if not self._eligible(fgraph):
            return
        original, inner = _detached(fgraph), _detached(fgraph)
        try:
            _jax_rewrites().rewrite(inner)
            runnable = FunctionGraph(inner.inputs, inner.outputs, clone=True)
            funcified = _funcify(runnable)
        except Exception:
            return  # an Op without a JAX implementation: leave the graph alone
        if any(isinstance(o, Constant) or o in inner.inputs for o in inner.outputs):
            return
        if _numbers_could_change(inner):  # the JAX-mode rewrites can add checks too
            return
        op = XlaGraphOp(inner, original)
        # What the first run would build again (its graph and JAX function), kept.
        op.__dict__.update(_fgraph=runnable, _funcified=funcified)
        outputs = op(*fgraph.inputs, return_list=True)
        fgraph.replace_all(
            list(zip(fgraph.outputs, outputs, strict=True)), reason="pymc_jaxops_absorb"
        )

    @staticmethod
    def _eligible(fgraph) -> bool:
        nodes = fgraph.apply_nodes
        if not any(isinstance(n.op, JaxOp) for n in nodes):
            return False
        if sum(not isinstance(n.op, JaxOp) for n in nodes) < _MIN_OTHER_NODES:
            return False
        if getattr(fgraph, "update_mapping", None):
            return False  # shared updates (random generators) keep their C semantics
        if any(isinstance(n.op, RandomVariable | XlaGraphOp) for n in nodes):
            return False
        if _numbers_could_change(fgraph):
            return False
        variables = [*fgraph.inputs, *fgraph.outputs]
        if not all(isinstance(v.type, TensorType) for v in variables):
            return False
        if any(isinstance(v, Constant) or v in fgraph.inputs for v in fgraph.outputs):
            return False
        return not any(
            isinstance(v, SharedVariable) and not isinstance(v.type, TensorType)
            for v in fgraph.inputs
        )


def _jax_rewrites() -> Any:
    """PyTensor's JAX-mode rewrites but its fusion of elementwise nodes into ``Composite``
    ones: XLA fuses them itself. Measured on three benchmark models (Python 3.11): the same
    output bits at their initial points, 25-75 ms less from building the function to its
    first answer."""
    return get_mode("JAX").excluding("fusion").optimizer


absorb_into_xla = _Absorb()

# After canonicalize (position 1), where PyMC's compile turns parameter checks into switches.
# Twice: for the C backend ("cxx_only", which the JAX and Numba linkers exclude) and for
# the Numba backend (its linker requires "numba" rewrites); never in JAX mode, which jits
# the whole graph itself.
register_rewrite(
    "pymc_jaxops_absorb_into_xla", absorb_into_xla, "fast_run", TAG, "cxx_only", position=1.1
)
register_rewrite("pymc_jaxops_absorb_into_xla_numba", _Absorb(), "numba", TAG, position=1.1)


# Ops that Numba's compiled code launches, by launch key (weakly: a compiled function keeps
# its Op alive through its graph).
_LAUNCHABLE: weakref.WeakValueDictionary[str, XlaGraphOp] = weakref.WeakValueDictionary()
_FINGERPRINTS_SEEN: dict[str, int] = {}
_LAUNCH_LOCK = threading.Lock()


def _launch(key: str, inputs: tuple) -> Any:
    """Numba's one entry into Python per evaluation: run the Op named ``key`` (the XLA
    executable releases the GIL while it runs)."""
    op = _LAUNCHABLE.get(key)
    if op is None:
        raise RuntimeError(
            f"pymc_jaxops: compiled code called the absorbed graph {key!r}, which this "
            "process no longer holds. Compile the function again (or keep the PyTensor "
            "function that holds it alive while the compiled code runs)."
        )
    outputs = op.outputs_of(inputs)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


# Numba's cached code calls _launch by module and name: a cache written by a release where
# either differs (or _launch took other arguments) must not be loaded. Bump on any change to
# _launch's contract.
_LAUNCH_ABI = 1


def _numba_funcify_xla_graph(op: XlaGraphOp, node=None, **kwargs):
    key = op.launch_key()
    where = f"{_launch.__module__}.{_launch.__qualname__}"
    return object_mode_launch(node, _launch, key), f"{where}_v{_LAUNCH_ABI}_{key}"


register_dispatch("numba_cache_key", XlaGraphOp, _numba_funcify_xla_graph)
register_dispatch(
    "numba", XlaGraphOp, lambda op, node=None, **kw: _numba_funcify_xla_graph(op, node)[0]
)
# A graph that is one absorbed node: PyTensor's thunk calls the Op, not Numba's object mode.
one_node_runs_in_python(
    lambda node: node.op.outputs_of if isinstance(node.op, XlaGraphOp) else None
)
