"""BlackJAX NUTS on a PyMC model, returning ArviZ InferenceData with PyMC's names and dims.

Built on :func:`pymc_jaxops.model_to_jax`: window adaptation and NUTS run on ``logdensity``
from PyMC's jittered initial points, and draws are mapped back with ``constrain``. This is
the path ``pm.sample(nuts_sampler="blackjax")`` takes, which fails with pymc 5.28.5 and
blackjax 1.7.1.

The warm-up is BlackJAX's own Stan window adaptation (``build_schedule`` and the
init/update/final steps from :mod:`pymc_jaxops._upstream.blackjax`), run one step at a time
inside our chunk program so that it shares the draws' host loop (:mod:`._chunks`: Ctrl-C,
chunk sizing) and progress bar (:mod:`._progress`).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
from jax.typing import ArrayLike
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)
from pymc.model import modelcontext

from pymc_jaxops._upstream.arviz import from_groups
from pymc_jaxops._upstream.blackjax import WindowAdaptation, window_adaptation
from pymc_jaxops.to_jax._chains import CHAIN_METHODS, ChainLayout, ChainMethod
from pymc_jaxops.to_jax._chunks import in_chunks
from pymc_jaxops.to_jax._progress import Progress
from pymc_jaxops.to_jax.model import JaxModel, model_to_jax

__all__ = ["sample_blackjax_nuts"]

_log = logging.getLogger(__name__)

_RandomSeed: TypeAlias = int | Sequence[int] | np.ndarray | np.random.Generator | None

# Most steps one chunk call takes (the size of its output buffers); read at each call, so
# a test can shrink it to check that the draws do not depend on the chunking.
_CHUNK_MAX = 256


def sample_blackjax_nuts(
    model: pm.Model | None = None,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.8,
    random_seed: _RandomSeed = None,
    chain_method: ChainMethod | None = None,
    max_tree_depth: int = 10,
    progressbar: bool = True,
) -> Any:
    """Sample a PyMC model's posterior with BlackJAX NUTS and Stan-style window adaptation.

    Parameters
    ----------
    model : pm.Model, optional
        The model; defaults to the one on the ``with`` context stack. Its free variables must
        all be continuous.
    draws, tune : int
        Draws kept, and warm-up steps (step size and diagonal mass matrix adaptation, Stan's
        window schedule) discarded, per chain; both at least 1.
    chains : int
        Number of independent chains.
    target_accept : float
        Target of the step-size adaptation, in (0, 1). BlackJAX's ``acceptance_rate`` averages
        over the whole trajectory, so it tends to end above this target.
    random_seed : int, sequence of int or numpy.random.Generator, optional
        What ``pm.sample`` accepts. Seeds initial points, adaptation and sampling; the same
        seed gives the same draws whatever the ``chain_method``. Drawn at random (and stored
        in ``attrs``) when omitted.
    chain_method : {"parallel", "vectorized", "sequential"}, optional
        ``"parallel"`` shards the chains over ``jax.devices()`` (one CPU device per core
        after ``import pymc_jaxops``, every GPU, every process's devices after
        ``jax.distributed.initialize``), running them in lockstep within a device when
        chains outnumber devices. ``"vectorized"`` runs all chains in lockstep with
        ``jax.vmap`` on one device (each NUTS step costs the longest trajectory among the
        chains); ``"sequential"`` runs them one after the other with ``jax.lax.map``.
        Default: ``"parallel"`` when JAX has more than one device, else ``"vectorized"``.
    max_tree_depth : int
        Maximum number of trajectory doublings per NUTS step, at least 1.
    progressbar : bool
        Show a progress bar per chain (draws, divergences, step size), as ``pm.sample``
        does.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pm.sample`` returns with the installed ArviZ (``InferenceData`` on arviz 0.x,
        ``DataTree`` on arviz 1.x): ``posterior`` (constrained free variables and
        deterministics, with the model's dims and coords), ``sample_stats``
        (``diverging``, ``acceptance_rate``, ``step_size``, ``tree_depth``, ``n_steps``,
        ``energy``, ``lp``), ``observed_data`` and, when the model has any,
        ``constant_data``. Interrupted (Ctrl-C) after the warm-up, it holds the
        draws made so far, with a warning; interrupted during the warm-up,
        ``KeyboardInterrupt`` propagates.

    Raises
    ------
    ValueError
        If an argument is out of range, the model has no free variables or a discrete one,
        or a chain cannot start from a point of finite log density.
    TypeError
        If ``random_seed`` is not one of the accepted kinds (a JAX key, a float, a string).

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> from pymc_jaxops import sample_blackjax_nuts
    >>> with pm.Model(coords={"obs": range(50)}) as model:
    ...     mu = pm.Normal("mu", 0.0, 10.0)
    ...     sigma = pm.HalfNormal("sigma", 5.0)
    ...     y = pm.Normal("y", mu, sigma, observed=np.random.default_rng(0).normal(3, 2, 50))
    >>> idata = sample_blackjax_nuts(
    ...     model, draws=200, tune=200, chains=2, random_seed=1, progressbar=False
    ... )
    >>> idata.posterior["mu"].shape
    (2, 200)
    """
    model = modelcontext(model)
    _check_arguments(draws, tune, chains, target_accept, chain_method, max_tree_depth)
    seed = _seed_from(random_seed)
    if random_seed is None and jax.process_count() > 1:
        # Every process of a jax.distributed run must start from the same seed.
        from jax.experimental import multihost_utils

        seed = int(multihost_utils.broadcast_one_to_all(np.uint32(seed)))
    jax_model = model_to_jax(model)
    _check_continuous(jax_model)
    try:
        import blackjax
    except ImportError as err:  # pragma: no cover - blackjax is in the [samplers] extra
        raise ImportError(
            "sample_blackjax_nuts needs BlackJAX: pip install 'pymc_jaxops[samplers]'"
        ) from err

    method: ChainMethod = chain_method or ("parallel" if jax.device_count() > 1 else "vectorized")
    layout = ChainLayout.build(method, chains)
    _hint_devices(layout)
    _log.info(
        "BlackJAX NUTS: %d chains (%s, %d device%s), %d tune and %d draw iterations",
        chains,
        method,
        layout.devices,
        "s" if layout.devices > 1 else "",
        tune,
        draws,
    )
    began = time.perf_counter()
    nuts = _Nuts.build(jax_model, target_accept, max_tree_depth, _CHUNK_MAX)
    runner = _Runner(nuts, layout, tune)
    init_key, chains_key = jax.random.split(jax.random.key(seed))
    _check_finite_start(runner.start(init_key, chains_key))
    with Progress(progressbar, chains, tune + draws) as progress:
        runner.tune(progress)
        posterior, stats, interrupted = runner.draw(draws, progress)
    sampling_time = time.perf_counter() - began
    kept = next(iter(stats.values())).shape[1]
    if interrupted:
        warnings.warn(
            f"sample_blackjax_nuts: interrupted; returning the {kept} of {draws} draws per "
            "chain made so far.",
            UserWarning,
            stacklevel=2,
        )

    coords, dims = coords_and_dims_for_inferencedata(model)
    groups = {"posterior": posterior, "sample_stats": stats}
    for group, values in (
        ("observed_data", find_observations(model)),
        ("constant_data", find_constants(model)),
    ):
        if values:
            groups[group] = values
    return from_groups(
        groups,
        coords=coords,
        dims=dims,
        attrs={
            "sampling_time": sampling_time,
            "tuning_steps": tune,
            "random_seed": random_seed if isinstance(random_seed, int) else seed,
            "chain_method": method,
        },
        library=blackjax,
    )


# One chunk's output: constrained values and sample stats, one slot per step.
_Buffers: TypeAlias = tuple[dict[str, Any], dict[str, Any]]

_STATS = {
    "diverging": jnp.bool_,
    "acceptance_rate": jnp.float64,
    "tree_depth": jnp.int64,
    "n_steps": jnp.int64,
    "energy": jnp.float64,
    "lp": jnp.float64,
}


class _Chain(NamedTuple):
    """One chain's carry from one chunk call to the next."""

    state: Any  # BlackJAX's HMCState: position, log density and its gradient
    warmup: Any  # BlackJAX's window-adaptation state (frozen once the warm-up ends)
    # What the next NUTS step uses: the adaptation's current values during the warm-up,
    # then its final ones (averaged step size, last window's mass matrix).
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    tune_key: jax.Array
    draw_key: jax.Array


class _Call(NamedTuple):
    """A chunk call's arguments, the same for every chain."""

    first: ArrayLike  # the call's first step, counting warm-up steps
    n: ArrayLike  # steps in this call, at most the buffer size
    tune: ArrayLike  # warm-up steps in all
    schedule: jax.Array  # BlackJAX's build_schedule(tune): (stage, window end) per step


@dataclass(frozen=True, eq=False)
class _Nuts:
    """One chain's programs: start, NUTS steps, and BlackJAX's window adaptation.

    Pure functions of one chain's arrays; :class:`ChainLayout` lays them out over the
    chains. Warm-up step ``i`` uses ``fold_in(tune_key, i)`` and draw ``d`` uses
    ``fold_in(draw_key, d)``, so the draws do not depend on how the steps are chunked.
    """

    jax_model: JaxModel
    kernel: Callable[..., tuple[Any, Any]]
    warmup: WindowAdaptation
    max_tree_depth: int
    buffer_size: int

    @classmethod
    def build(
        cls, jax_model: JaxModel, target_accept: float, max_tree_depth: int, buffer_size: int
    ) -> _Nuts:
        from blackjax.mcmc.nuts import build_kernel

        return cls(
            jax_model,
            build_kernel(),
            window_adaptation(target_accept),
            max_tree_depth,
            buffer_size,
        )

    def init_chain(self, position: Any, chain_key: jax.Array) -> _Chain:
        from blackjax.mcmc.hmc import init as hmc_init

        tune_key, draw_key = jax.random.split(chain_key)
        # float64, not a Python float, so the loop carry keeps one dtype from the start.
        warmup = self.warmup.init(position, jnp.ones((), jnp.float64))
        return _Chain(
            hmc_init(position, self.jax_model.logdensity),
            warmup,
            warmup.step_size,
            warmup.inverse_mass_matrix,
            tune_key,
            draw_key,
        )

    def adapt(self, chain: _Chain, step: jax.Array, call: _Call, acceptance: jax.Array) -> _Chain:
        """Chain after warm-up step ``step`` has moved it, with ``acceptance`` its rate."""
        state = chain.state
        warmup = self.warmup.update(
            chain.warmup, call.schedule[step], state.position, state.logdensity_grad, acceptance
        )
        # After the last warm-up step, the draws use the adaptation's final values.
        last = step == call.tune - 1
        final_step_size, final_inverse_mass_matrix = self.warmup.final(warmup)
        return chain._replace(
            warmup=warmup,
            step_size=jnp.where(last, final_step_size, warmup.step_size),
            inverse_mass_matrix=jnp.where(
                last, final_inverse_mass_matrix, warmup.inverse_mass_matrix
            ),
        )

    def chunk(self, chain: _Chain, call: _Call) -> tuple[_Chain, _Buffers]:
        """Steps ``call.first .. call.first + call.n - 1`` of one chain, and what they drew.

        One program for both phases (NUTS compiles once); the host never lets a chunk cross
        from warm-up to draws, so buffer slot ``i`` holds step ``call.first + i``.
        """
        values = jax.eval_shape(self.jax_model.constrain, chain.state.position)
        buffers = (
            jax.tree.map(lambda v: jnp.zeros((self.buffer_size, *v.shape), v.dtype), values),
            {k: jnp.zeros(self.buffer_size, dtype) for k, dtype in _STATS.items()},
        )
        body = functools.partial(self._step, call)
        chain, buffers = jax.lax.fori_loop(0, call.n, body, (chain, buffers))
        return chain, buffers

    def _step(
        self, call: _Call, i: jax.Array, carry: tuple[_Chain, _Buffers]
    ) -> tuple[_Chain, _Buffers]:
        """Step ``call.first + i`` (warm-up or draw), recorded in buffer slot ``i``."""
        chain, (kept, stats) = carry
        step = call.first + i
        tunes = step < call.tune
        key = jax.lax.cond(
            tunes,
            lambda: jax.random.fold_in(chain.tune_key, step),
            lambda: jax.random.fold_in(chain.draw_key, step - call.tune),
        )
        state, info = self.kernel(
            key,
            chain.state,
            self.jax_model.logdensity,
            chain.step_size,
            chain.inverse_mass_matrix,
            self.max_tree_depth,
        )
        chain = chain._replace(state=state)
        chain = jax.lax.cond(
            tunes, self.adapt, _unchanged, chain, step, call, info.acceptance_rate
        )
        new = {
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "tree_depth": info.num_trajectory_expansions,
            "n_steps": info.num_integration_steps,
            "energy": info.energy,
            "lp": state.logdensity,
        }
        drawn = self.jax_model.constrain(state.position)
        kept = jax.tree.map(lambda b, v: b.at[i].set(v), kept, drawn)
        stats = {k: stats[k].at[i].set(new[k].astype(stats[k].dtype)) for k in stats}
        return chain, (kept, stats)


def _unchanged(chain: _Chain, *_: Any) -> _Chain:
    return chain


def _start_chains(
    nuts: _Nuts, layout: ChainLayout, init_key: jax.Array, chains_key: jax.Array
) -> tuple[_Chain, jax.Array]:
    """Every chain's first carry, from PyMC's jittered initial points, and their logps."""
    chains = layout.chains
    positions = jax.vmap(nuts.jax_model.initial_params)(jax.random.split(init_key, chains))
    positions, chain_keys = layout.pad((positions, jax.random.split(chains_key, chains)))
    carry = jax.vmap(nuts.init_chain)(positions, chain_keys)
    return carry, jax.vmap(nuts.jax_model.logdensity)(positions)


class _Runner:
    """The chains' compiled programs, and the host loops that call them chunk by chunk.

    The chunk program takes a dynamic number of steps, so it compiles once and
    :func:`in_chunks` picks how many steps to run per call.
    """

    def __init__(self, nuts: _Nuts, layout: ChainLayout, tune: int):
        from blackjax.adaptation.window_adaptation import build_schedule

        self.layout, self.buffer_size, self.tune_steps = layout, nuts.buffer_size, tune
        self.schedule = jnp.asarray(build_schedule(tune))
        self._start = jax.jit(
            functools.partial(_start_chains, nuts, layout), out_shardings=layout.sharding
        )
        self._chunk = layout.over_chains(nuts.chunk)
        self.carry: _Chain | None = None

    def start(self, init_key: jax.Array, chains_key: jax.Array) -> np.ndarray:
        """Start every chain; returns each chain's log density at its initial point."""
        self.carry, logps = self._start(init_key, chains_key)
        return self.layout.to_host(logps)

    def tune(self, progress: Progress) -> None:
        """Run the warm-up; KeyboardInterrupt propagates."""
        in_chunks(
            self.tune_steps,
            functools.partial(self._tune_chunk, progress),
            most=self.buffer_size,
            log=_log,
            label="sample_blackjax_nuts: tune",
        )

    def draw(
        self, draws: int, progress: Progress
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
        """Posterior and sample stats, ``(chains, draws)`` first, and whether interrupted."""
        assert self.carry is not None
        step_size = self.layout.to_host(self.carry.step_size)
        parts: list[_Buffers] = []
        interrupted = in_chunks(
            draws,
            functools.partial(self._draw_chunk, progress, step_size, parts),
            most=self.buffer_size,
            log=_log,
            label="sample_blackjax_nuts: draw",
            may_stop=True,
        )
        posterior = {k: np.concatenate([p[0][k] for p in parts], axis=1) for k in parts[0][0]}
        stats = {k: np.concatenate([p[1][k] for p in parts], axis=1) for k in parts[0][1]}
        kept = stats["lp"].shape[1]
        stats["step_size"] = np.repeat(step_size[:, None], kept, axis=1)
        return posterior, stats, interrupted

    def _call(self, first: int, n: int) -> _Call:
        return _Call(first, n, self.tune_steps, self.schedule)

    def _tune_chunk(self, progress: Progress, first: int, n: int) -> None:
        self.carry, _ = self._chunk(self.carry, self._call(first, n))
        jax.block_until_ready(self.carry)
        progress.update(n, None, None)

    def _draw_chunk(
        self, progress: Progress, step_size: np.ndarray, parts: list[_Buffers], first: int, n: int
    ) -> None:
        self.carry, buffers = self._chunk(self.carry, self._call(self.tune_steps + first, n))
        kept, stats = jax.tree.map(lambda x: x[:, :n], self.layout.to_host(buffers))
        parts.append((kept, stats))
        progress.update(n, stats["diverging"].sum(axis=1), step_size)


def _hint_devices(layout: ChainLayout) -> None:
    from pymc_jaxops.devices import ENV_VAR, _usable_cores

    cores = _usable_cores()
    if layout.method == "parallel" or jax.default_backend() != "cpu" or layout.chains < 2:
        return
    if jax.device_count() == 1 and cores > 1:
        _log.info(
            "sample_blackjax_nuts: JAX has one CPU device for %d cores, so the chains share "
            "it; import pymc_jaxops before any JAX computation (and leave %s unset) for one "
            "device per core and chain_method='parallel'.",
            cores,
            ENV_VAR,
        )


def _seed_from(random_seed: _RandomSeed) -> int:
    """A 32-bit JAX seed from anything pm.sample accepts as ``random_seed``."""
    if random_seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_seed, np.random.Generator):
        return int(random_seed.integers(2**32))
    entropy: int | list[int] | None = None
    if isinstance(random_seed, bool):
        pass
    elif isinstance(random_seed, int | np.integer) and random_seed >= 0:
        if random_seed < 2**32:
            return int(random_seed)
        entropy = int(random_seed)
    elif (
        isinstance(random_seed, Sequence | np.ndarray)
        and not isinstance(random_seed, str | bytes)
        and len(random_seed) > 0
        and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0
            for v in random_seed
        )
    ):
        entropy = [int(v) for v in random_seed]
    if entropy is None:
        is_jax = isinstance(random_seed, jax.Array)
        shown = f"a JAX array of dtype {getattr(random_seed, 'dtype', '?')}"
        shown = shown if is_jax else repr(random_seed)
        hint = "; pass an int instead of a JAX key" if is_jax else ""
        raise TypeError(
            "sample_blackjax_nuts: random_seed must be None, a non-negative int, a sequence "
            f"of non-negative ints or a numpy.random.Generator (as for pm.sample), got "
            f"{shown}{hint}"
        )
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _check_arguments(
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    chain_method: str | None,
    max_tree_depth: int,
) -> None:
    # BlackJAX 1.7's window adaptation fails on zero steps, so tune starts at 1.
    for name, value, least in (
        ("draws", draws, 1),
        ("tune", tune, 1),
        ("chains", chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(
                f"sample_blackjax_nuts: {name} must be an int >= {least}, got {value!r}"
            )
    if not 0.0 < target_accept < 1.0:
        raise ValueError(
            f"sample_blackjax_nuts: target_accept must be in (0, 1), got {target_accept}"
        )
    if chain_method is not None and chain_method not in CHAIN_METHODS:
        raise ValueError(
            f"sample_blackjax_nuts: chain_method must be one of {list(CHAIN_METHODS)} or None, "
            f"got {chain_method!r}"
        )


def _check_continuous(jax_model: JaxModel) -> None:
    if not jax_model.param_spec:
        raise ValueError("sample_blackjax_nuts: the model has no free variables to sample")
    discrete = [
        name
        for name, spec in jax_model.param_spec.items()
        if not jnp.issubdtype(spec.dtype, jnp.floating)
    ]
    if discrete:
        raise ValueError(
            f"sample_blackjax_nuts: NUTS needs a gradient, but the free variables {discrete} "
            "are discrete. Marginalize them out (e.g. pymc_extras.marginalize) or sample them "
            "with pm.sample, which pairs NUTS with a discrete step method."
        )


def _check_finite_start(logps: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(logps)).tolist()
    if bad:
        raise ValueError(
            f"sample_blackjax_nuts: chains {bad} found no starting point with a finite log "
            "density after 10 jittered tries; inspect model.point_logps() and the priors, or "
            "set initvals on the model variables."
        )
