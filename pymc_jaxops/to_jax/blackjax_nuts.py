"""BlackJAX NUTS on a PyMC model, returning ArviZ InferenceData with PyMC's names and dims.

Built on :func:`pymc_jaxops.model_to_jax`: window adaptation and NUTS run on ``logdensity``
from PyMC's jittered initial points, and draws are mapped back with ``constrain``. This is
the path ``pm.sample(nuts_sampler="blackjax")`` takes, which fails with pymc 5.28.5 and
blackjax 1.7.1.
"""

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)
from pymc.model import modelcontext

from pymc_jaxops._upstream.arviz import from_groups
from pymc_jaxops.to_jax._chains import CHAIN_METHODS, ChainLayout, ChainMethod
from pymc_jaxops.to_jax.model import JaxModel, model_to_jax

__all__ = ["sample_blackjax_nuts"]

_log = logging.getLogger(__name__)

_RandomSeed: TypeAlias = int | Sequence[int] | np.ndarray | np.random.Generator | None

# Draws per compiled chunk call are chosen so one call takes about this long: an interrupt
# (Ctrl-C) is honoured between calls, and the progress bar moves.
_CHUNK_SECONDS = 0.5
# Most draws one chunk call keeps (the size of its output buffer).
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
    runner = _Runner(blackjax, jax_model, layout, tune, target_accept, max_tree_depth)
    init_key, chains_key = jax.random.split(jax.random.key(seed))
    state, logps = runner.start(init_key, chains_key)
    _check_finite_start(logps)
    with _Progress(progressbar, chains, tune + draws) as progress:
        adapted = runner.tune(state, tune, progress)
        posterior, stats, interrupted = runner.draw(adapted, tune, draws, progress)
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


class _Tuning(NamedTuple):
    """One chain's warm-up carry: NUTS state and the step size / mass matrix adaptation."""

    state: Any
    dual_averaging: Any
    mass_matrix: Any
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class _Runner:
    """Two compiled programs laid out over the chains: start, and a chunk of NUTS steps.

    The chunk program takes a dynamic number of steps, so it compiles once and the host loop
    picks how many steps to run per call. Warm-up step ``i`` uses ``fold_in(tune_key, i)``
    and draw ``d`` uses ``fold_in(draw_key, d)``: the draws do not depend on the chunking.
    """

    def __init__(
        self,
        blackjax: ModuleType,
        jax_model: JaxModel,
        layout: ChainLayout,
        tune: int,
        target_accept: float,
        max_tree_depth: int,
    ):
        from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
        from blackjax.adaptation.step_size import dual_averaging_adaptation
        from blackjax.adaptation.window_adaptation import build_schedule
        from blackjax.mcmc.hmc import init as hmc_init
        from blackjax.mcmc.nuts import build_kernel

        self.layout = layout
        self.schedule = jnp.asarray(build_schedule(tune))
        logdensity, constrain = jax_model.logdensity, jax_model.constrain
        kernel = build_kernel()
        da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
        mm_init, mm_update, mm_final = mass_matrix_adaptation(True)
        chains = layout.chains

        def nuts_step(key, state, step_size, inverse_mass_matrix):
            return kernel(key, state, logdensity, step_size, inverse_mass_matrix, max_tree_depth)

        def start(keys: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            init_key, chains_key = keys
            positions = jax.vmap(jax_model.initial_params)(jax.random.split(init_key, chains))
            per_chain = layout.pad((positions, jax.random.split(chains_key, chains)))
            positions, chain_keys = per_chain
            split = jax.vmap(jax.random.split)(chain_keys)
            tune_keys, draw_keys = split[:, 0], split[:, 1]
            dim = sum(int(np.prod(s.shape)) for s in jax_model.param_spec.values())

            def init_one(position):
                mm = mm_init(dim)
                return _Tuning(
                    hmc_init(position, logdensity),
                    da_init(1.0),
                    mm,
                    jnp.ones((), jnp.float64),
                    mm.inverse_mass_matrix,
                )

            carry = (jax.vmap(init_one)(positions), tune_keys, draw_keys)
            return carry, jax.vmap(logdensity)(positions)

        def chunk(chain, shared):
            """Steps ``first .. first + n - 1`` of one chain: warm-up steps, then draws.

            One program for both phases (NUTS compiles once); the host never lets a chunk
            cross from warm-up to draws, so buffer slot ``i`` holds step ``first + i``.
            """
            tuning, tune_key, draw_key = chain
            first, n, schedule, tune = shared
            values = jax.eval_shape(constrain, tuning.state.position)
            buffers = (
                jax.tree.map(lambda v: jnp.zeros((_CHUNK_MAX, *v.shape), v.dtype), values),
                {k: jnp.zeros(_CHUNK_MAX, dtype) for k, dtype in _STATS.items()},
            )

            def adapt(step: jax.Array, t: _Tuning, info: Any) -> _Tuning:
                stage, window_end = schedule[step, 0], schedule[step, 1]
                da = da_update(t.dual_averaging, info.acceptance_rate)
                mm = jax.lax.cond(
                    stage == 1,
                    lambda m: mm_update(m, t.state.position),
                    lambda m: m,
                    t.mass_matrix,
                )
                t = _Tuning(t.state, da, mm, jnp.exp(da.log_step_size), t.inverse_mass_matrix)

                def end_window(t: _Tuning) -> _Tuning:
                    mm = mm_final(t.mass_matrix)
                    da = da_init(da_final(t.dual_averaging))
                    return _Tuning(
                        t.state, da, mm, jnp.exp(da.log_step_size), mm.inverse_mass_matrix
                    )

                t = jax.lax.cond(window_end == 1, end_window, lambda t: t, t)
                # After the last warm-up step, draws use the averaged step size.
                final = t._replace(step_size=da_final(t.dual_averaging))
                return jax.tree.map(lambda a, b: jnp.where(step == tune - 1, a, b), final, t)

            def one(i, carry):
                t, (kept, stats) = carry
                step = first + i
                tunes = step < tune
                key = jax.lax.cond(
                    tunes,
                    lambda: jax.random.fold_in(tune_key, step),
                    lambda: jax.random.fold_in(draw_key, step - tune),
                )
                state, info = nuts_step(key, t.state, t.step_size, t.inverse_mass_matrix)
                t = t._replace(state=state)
                t = jax.lax.cond(tunes, lambda t: adapt(step, t, info), lambda t: t, t)
                new = {
                    "diverging": info.is_divergent,
                    "acceptance_rate": info.acceptance_rate,
                    "tree_depth": info.num_trajectory_expansions,
                    "n_steps": info.num_integration_steps,
                    "energy": info.energy,
                    "lp": state.logdensity,
                }
                kept = jax.tree.map(lambda b, v: b.at[i].set(v), kept, constrain(state.position))
                stats = {k: stats[k].at[i].set(new[k].astype(stats[k].dtype)) for k in stats}
                return t, (kept, stats)

            tuning, buffers = jax.lax.fori_loop(0, n, one, (tuning, buffers))
            return (tuning, tune_key, draw_key), buffers

        sharding = layout.sharding
        self._start = jax.jit(start, out_shardings=sharding)
        self._chunk = layout.over_chains(chunk)

    def start(self, init_key: jax.Array, chains_key: jax.Array) -> tuple[Any, np.ndarray]:
        carry, logps = self._start((init_key, chains_key))
        return carry, self.layout.to_host(logps)

    def tune(self, carry: Any, tune: int, progress: "_Progress") -> Any:
        def run(first: int, n: int) -> None:
            nonlocal carry
            carry, _ = self._chunk(carry, (first, n, self.schedule, tune))
            jax.block_until_ready(carry)

        _in_chunks(tune, run, progress, tuning=True)
        return carry

    def draw(
        self, carry: Any, tune: int, draws: int, progress: "_Progress"
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
        step_size = self.layout.to_host(carry[0].step_size)
        parts: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

        def run(first: int, n: int) -> None:
            nonlocal carry
            carry, buffers = self._chunk(carry, (tune + first, n, self.schedule, tune))
            kept, stats = jax.tree.map(lambda x: x[:, :n], self.layout.to_host(buffers))
            parts.append((kept, stats))
            progress.update(n, stats["diverging"].sum(axis=1), step_size)

        interrupted = _in_chunks(draws, run, progress, tuning=False, may_stop=True)
        posterior = {k: np.concatenate([p[0][k] for p in parts], axis=1) for k in parts[0][0]}
        stats = {k: np.concatenate([p[1][k] for p in parts], axis=1) for k in parts[0][1]}
        kept = stats["lp"].shape[1]
        stats["step_size"] = np.repeat(step_size[:, None], kept, axis=1)
        return posterior, stats, interrupted


_STATS = {
    "diverging": jnp.bool_,
    "acceptance_rate": jnp.float64,
    "tree_depth": jnp.int64,
    "n_steps": jnp.int64,
    "energy": jnp.float64,
    "lp": jnp.float64,
}


def _in_chunks(
    total: int,
    run: Callable[[int, int], Any],
    progress: "_Progress",
    *,
    tuning: bool,
    may_stop: bool = False,
) -> bool:
    """Run ``total`` steps as ``run(first, n)`` calls sized to last ``_CHUNK_SECONDS``.

    Returns whether a KeyboardInterrupt stopped the loop after at least one call (only when
    ``may_stop``); otherwise the interrupt propagates.
    """
    # Every process of a jax.distributed run must make the same calls, so chunk sizes
    # cannot follow each process's own clock there.
    adaptive = jax.process_count() == 1
    # Adaptive: start with one step (the first call also compiles), then aim for the target,
    # growing at most 4x per call so a cheap chunk cannot be followed by a very long one.
    done, n = 0, 1 if adaptive else min(total, _CHUNK_MAX)
    try:
        while done < total:
            n = min(n, total - done)
            t0 = time.perf_counter()
            run(done, n)
            elapsed = time.perf_counter() - t0
            done += n
            if tuning:
                progress.update(n, None, None)
            _log.debug("sample_blackjax_nuts: %s %d/%d", "tune" if tuning else "draw", done, total)
            if adaptive:
                target = n * _CHUNK_SECONDS / max(elapsed, 1e-6)
                n = int(np.clip(target, 1, min(4 * n, _CHUNK_MAX)))
    except KeyboardInterrupt:
        if may_stop and done > 0:
            return True
        raise
    return False


class _Progress:
    """One rich progress bar per chain, as pm.sample shows; a no-op when disabled."""

    def __init__(self, enabled: bool, chains: int, total: int):
        self.enabled = enabled and jax.process_index() == 0
        self.chains, self.total = chains, total
        self.divergences = np.zeros(chains, dtype=int)

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("divergences {task.fields[divergences]}"),
                TextColumn("step size {task.fields[step_size]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.bar.__enter__()
            self.tasks = [
                self.bar.add_task(
                    f"chain {c} (tune)", total=self.total, divergences=0, step_size="-"
                )
                for c in range(self.chains)
            ]
        return self

    def update(self, n: int, divergences: np.ndarray | None, step_size: Any) -> None:
        if not self.enabled:
            return
        if divergences is not None:
            self.divergences += divergences
        for c, task in enumerate(self.tasks):
            fields: dict[str, Any] = {"divergences": int(self.divergences[c])}
            if step_size is not None:
                fields["step_size"] = f"{float(step_size[c]):.3g}"
                fields["description"] = f"chain {c} (draw)"
            self.bar.update(task, advance=n, **fields)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


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
