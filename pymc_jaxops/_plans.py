"""Choose between equivalent ways of running a gradient by timing them, without delaying
the first answer.

A value-and-grad of a JAX function can run as one fused XLA program, as a forward program
keeping the VJP residuals followed by a backward program, or as a plain forward program
followed by a gradient-only one (``_vjp.py``); a whole absorbed graph can run with its
wrapped functions' gradients as built or fused into its forward passes (``_absorb.py``).
Which is cheaper depends on the function: on some ``lax.scan`` HMMs the split was measured
faster than the fused call, on a diffrax ODE solve slower. All are equal in exact
arithmetic, so a :class:`Race` times them on the calls a sampler makes anyway:

1. the first call runs the default plan alone: the only program compiled before the first
   answer, which costs what ``jax.jit(jax.value_and_grad(f))`` costs a pure-JAX user;
2. the second call times the default (best of :data:`_FIRST_TIMINGS`); if it takes less
   than :data:`MEASURE_ABOVE_S`, it is kept (a faster alternative could not repay its
   compilation);
3. otherwise one background thread compiles the alternatives (running each once on a copy
   of that call's arguments), while the calls go on with the default;
4. the next :data:`_ROUNDS` calls each time every plan on their own arguments (a few calls
   in a row, about :data:`_TIMED_S` in all), interleaved, so a busy machine disturbs all
   alike; an alternative whose answer differs from the default's in any bit on any of
   these calls is out; the fastest plan wins if it beats the default by
   :data:`_MARGIN`, else the default stays, and the winner runs every later call.

Plans are equal in exact arithmetic, not always in floating point: two XLA programs may
round differently (on a dynamax HMM, the fused and two-call plans differed in the last bit
at 46 of 200 points). A switch on a timing within noise would make a sampler's draws for a
given seed depend on the run, so only a clear winner that agreed bit for bit wherever it
was compared replaces the default.

``PYMC_JAXOPS_TIME_PLANS=off`` keeps the default without timing. The choice is remembered
on the Op (per input shapes) and travels with it to a chain process on this machine
(``_ops.for_this_machine``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from pymc_jaxops import _config
from pymc_jaxops._jit import jitted
from pymc_jaxops._vjp import Backward, ForwardWithResiduals, GradOnly, ValueAndGrad, vjp_structure
from pymc_jaxops.precision import run_in

__all__ = ["MEASURE_ABOVE_S", "PLANS", "GradientPlans", "Race", "shapes_of", "specs_of"]

_logger = logging.getLogger("pymc_jaxops")

MEASURE_ABOVE_S = 100e-6
"""Time the alternative plans only when the default one takes at least this long."""

_ROUNDS = 5

_FIRST_TIMINGS = 3
"""Calls of the default timed on the second call, to decide whether to race at all."""

Thunks = Callable[[tuple], dict[str, Callable[[], object]]]
"""Given a call's arguments, one zero-argument call per plan, running that whole plan."""


_TIMED_S = 2e-3
"""Each plan is timed over calls adding up to about this long (at most :data:`_REPEAT`):
one isolated call of a 100 µs program was measured anywhere from 1.5 to 5 times its time in a
loop, and in a sampler the calls come in a loop."""

_REPEAT = 10

_MARGIN = 0.8
"""An alternative wins only if its best time is under this fraction of the default's: the
same model timed again on this VM varied by ±15%, and a choice made by noise differs from
run to run."""


def _seconds(run: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Seconds per call of ``run``, over ``repeat`` calls in a row (after one more), each
    waited for, and what the last call returned."""
    if repeat > 1:
        jax.block_until_ready(run())  # the first after another plan finds colder caches
    t0 = time.perf_counter()
    for _ in range(repeat):
        output = jax.block_until_ready(run())
    return (time.perf_counter() - t0) / repeat, output


def _same_bits(a: object, b: object) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(leaves_a) != len(leaves_b):
        return False
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    return True


def _own_copy(args: tuple) -> tuple:
    # PyTensor may write the next call's values into these NumPy buffers.
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


class Race:
    """The fastest of equivalent plans, chosen while the calls go on (see the module docstring).

    Parameters
    ----------
    default : str
        The plan that answers until another has been timed faster.
    names : sequence of str
        Every plan, ``default`` included.
    winner : str, optional
        A choice made before (in the process that pickled the Op, or for an equal graph):
        no timing. With ``PYMC_JAXOPS_TIME_PLANS=off`` the default wins regardless.

    Examples
    --------
    >>> import time
    >>> race = Race("slow", ["slow", "quick"])
    >>> plans = {"slow": lambda: time.sleep(0.002), "quick": lambda: None}
    >>> def thunks(args):
    ...     return plans
    >>> for _ in range(10):
    ...     plan = race.plan((), thunks)
    ...     race.wait(timeout=10)
    >>> race.winner
    'quick'
    """

    def __init__(self, default: str, names: Sequence[str], winner: str | None = None):
        self.default = default
        self.names = tuple(names)
        self.winner: str | None = winner if winner in self.names else None
        if len(self.names) == 1 or not _config.time_plans():
            self.winner = default  # timing off: the default, whatever was chosen before
        self._calls = 0
        self._rounds = 0
        self._best = dict.fromkeys(self.names, float("inf"))
        self._ready: list[str] = [default]
        self._repeat = 1
        self._warming: threading.Thread | None = None
        self._lock = threading.Lock()
        self._answers: dict[str, object] = {}

    def plan(self, args: tuple, thunks: Thunks) -> str:
        """The plan to answer this call with; may first time the plans on ``args``."""
        if self.winner is not None:
            return self.winner
        # A call that finds another one timing (a chain thread) answers with the default.
        if self._lock.acquire(blocking=False):
            try:
                self._step(args, thunks)
            finally:
                self._lock.release()
        return self.winner or self.default

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background compilation, if one runs (tests, benchmarks)."""
        thread = self._warming
        if thread is not None:
            thread.join(timeout)

    def _step(self, args: tuple, thunks: Thunks) -> None:
        self._calls += 1
        if self._calls == 1:
            return  # the caller's own call compiles the default
        if not _config.time_plans():
            self.winner = self.default
            return
        if self._calls == 2:
            # The best of a few: one call on a busy machine can look 5 times slower, and a
            # cheap function raced for nothing compiles its alternatives meanwhile.
            run = thunks(args)[self.default]
            seconds = min(_seconds(run)[0] for _ in range(_FIRST_TIMINGS))
            if seconds < MEASURE_ABOVE_S:
                self.winner = self.default
            else:
                self._repeat = max(1, min(_REPEAT, round(_TIMED_S / seconds)))
                self._warm_up(thunks(_own_copy(args)))
            return
        if self._warming is not None and self._warming.is_alive():
            return
        if len(self._ready) == 1:
            self.winner = self.default  # no alternative compiled
            return
        runs = thunks(args)
        for name in self._ready:
            self._best[name] = min(self._best[name], self._time(name, runs[name]))
        self._drop_other_answers()
        if len(self._ready) == 1:
            self.winner = self.default
            return
        self._rounds += 1
        if self._rounds >= _ROUNDS:
            fastest = min(self._ready, key=lambda name: self._best[name])
            clear = self._best[fastest] < _MARGIN * self._best[self.default]
            self.winner = fastest if clear else self.default

    def _time(self, name: str, run: Callable[[], object]) -> float:
        """Seconds per call of ``run`` (the whole plan ``name``); its answer is kept for
        :meth:`_drop_other_answers`."""
        seconds, self._answers[name] = _seconds(run, self._repeat)
        return seconds

    def _drop_other_answers(self) -> None:
        """Leave out every alternative that answered this round's call with other bits."""
        answers, self._answers = self._answers, {}
        reference = answers.get(self.default)
        for name in self._ready[1:]:
            answer = answers.get(name)
            if reference is None or answer is None or _same_bits(answer, reference):
                continue
            _logger.debug("pymc_jaxops: plan %r left out: it rounds otherwise", name)
            self._ready.remove(name)

    def _warm_up(self, runs: dict[str, Callable[[], object]]) -> None:
        def compile_alternatives() -> None:
            for name in self.names:
                if name == self.default:
                    continue
                try:
                    jax.block_until_ready(runs[name]())
                except Exception as error:  # the plan cannot run here: leave it out
                    _logger.debug("pymc_jaxops: plan %r left out: %s", name, error)
                    continue
                self._ready.append(name)

        # Not a daemon: a compilation cut short by the interpreter's exit could crash it.
        self._warming = threading.Thread(
            target=compile_alternatives, name="pymc_jaxops-plans", daemon=False
        )
        self._warming.start()


def specs_of(values: Sequence) -> tuple:
    """``(shape, dtype)`` of each value: what a plan is chosen for."""
    return tuple(
        (tuple(np.shape(v)), np.dtype(getattr(v, "dtype", None) or np.asarray(v).dtype).str)
        for v in values
    )


def shapes_of(fn: Callable, specs: tuple, mode: bool) -> Any:
    """``jax.eval_shape`` of ``fn`` at ``(shape, dtype)`` specs, traced in x64 ``mode`` (a
    float64 spec would be truncated to float32 outside it)."""

    def trace() -> Any:
        return jax.eval_shape(fn, *(jax.ShapeDtypeStruct(*s) for s in specs))

    return run_in(mode, trace)()


class GradientPlans:
    """The jitted programs of one gradient at given primal shapes, each built on first use.

    ``run(name)`` is ``(*primals, *cotangents) -> (*outputs, *input cotangents)`` by the
    plan ``"fused"``, ``"split"`` or ``"two calls"`` (see ``_vjp.py``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> def f(x):
    ...     return (jnp.sin(x),)
    >>> plans = GradientPlans(f, (True,), (True,), True, specs_of([np.zeros(3)]))
    >>> x, ct = np.array([0.0, 1.0, 2.0]), np.ones(3)
    >>> runs = [plans.run(name)(x, ct) for name in PLANS]
    >>> all(np.allclose(r[1], np.cos(x)) for r in runs)
    True
    """

    def __init__(self, fn: Callable, ct_mask: tuple, wrt_mask: tuple, mode: bool, specs: tuple):
        self.fn, self.ct_mask, self.wrt_mask = fn, tuple(ct_mask), tuple(wrt_mask)
        self.mode, self.specs = mode, specs
        self.n_in = len(specs)
        self._built: dict[str, Callable] = {}
        self._lock = threading.Lock()  # built from a background thread too (Race)

    def _get(self, what: str, build: Callable[[], Callable]) -> Callable:
        try:
            return self._built[what]
        except KeyError:
            with self._lock:
                return self._built.setdefault(what, build())

    @property
    def fused(self) -> Callable:
        return self._get("fused", lambda: jitted(self._value_and_grad(), self.mode))

    @property
    def forward(self) -> Callable:
        return self._get("forward", lambda: jitted(self.fn, self.mode))

    @property
    def grad_only(self) -> Callable:
        return self._get(
            "grad only", lambda: jitted(GradOnly(self._value_and_grad(), self._n_out), self.mode)
        )

    @property
    def with_residuals(self) -> Callable:
        return self._get("with residuals", lambda: jitted(self._forward(), self.mode))

    @property
    def backward(self) -> Callable:
        """``(*residuals, flag, *cotangents) -> input cotangents``."""

        def build() -> Callable:
            # The residuals the forward pass keeps (recorded when JAX traced it).
            find = run_in(self.mode, vjp_structure)
            n_res = len(find(self.fn, self.ct_mask, self.wrt_mask, self.specs).residuals)
            bwd = Backward(self.fn, self.n_in, n_res, self.ct_mask, self.wrt_mask)
            from_specs = run_in(self.mode, jax.jit(bwd.from_specs, static_argnums=0))
            return functools.partial(from_specs, self.specs)

        return self._get("backward", build)

    def run(self, name: str) -> Callable:
        """The whole plan ``name`` as one callable."""
        n_in = self.n_in
        if name == "fused":
            return self.fused
        if name == "two calls":

            def two_calls(*args):
                return (*self.forward(*args[:n_in]), *self.grad_only(*args))

            return two_calls

        def split(*args):
            res = self.with_residuals(*args[:n_in])
            n_out = self._n_out
            return (*res[:n_out], *self.backward(*res[n_out:], *args[n_in:]))

        return split

    @functools.cached_property
    def outputs(self) -> Any:
        """The function's output shapes and dtypes at these specs (traced once)."""
        return shapes_of(self.fn, self.specs, self.mode)

    @property
    def _n_out(self) -> int:
        return len(self.outputs)

    def _value_and_grad(self) -> ValueAndGrad:
        return ValueAndGrad(self.fn, self.n_in, self.ct_mask, self.wrt_mask)

    def _forward(self) -> ForwardWithResiduals:
        return ForwardWithResiduals(self.fn, self.ct_mask, self.wrt_mask)


PLANS = ("fused", "split", "two calls")
"""The plans of a gradient, the default first."""
