"""BlackJAX NUTS on a PyMC model, returning ArviZ InferenceData with PyMC's names and dims.

Built on :func:`pymc_jaxops.model_to_jax`: window adaptation and NUTS run on ``logdensity``
from PyMC's jittered initial points, and draws are mapped back with ``constrain``. This is
the path ``pm.sample(nuts_sampler="blackjax")`` takes, which fails with pymc 5.28.5 and
blackjax 1.7.1.
"""

import time
from types import ModuleType
from typing import Literal

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
from arviz.data.base import make_attrs
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)
from pymc.model import modelcontext

from pymc_jaxops.model import JaxModel, Params, Values, model_to_jax

__all__ = ["sample_blackjax_nuts"]


def sample_blackjax_nuts(
    model: pm.Model | None = None,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.8,
    random_seed: int | None = None,
    chain_method: Literal["vectorized", "sequential"] = "vectorized",
    max_tree_depth: int = 10,
) -> az.InferenceData:
    """Sample a PyMC model's posterior with BlackJAX NUTS and Stan-style window adaptation.

    Parameters
    ----------
    model : pm.Model, optional
        The model; defaults to the one on the ``with`` context stack. Its free variables must
        all be continuous.
    draws, tune : int
        Draws kept, and warm-up steps (step size and diagonal mass matrix adaptation) discarded,
        per chain; both at least 1.
    chains : int
        Number of independent chains.
    target_accept : float
        Target of the step-size adaptation, in (0, 1). BlackJAX's ``acceptance_rate`` averages
        over the whole trajectory, so it tends to end above this target.
    random_seed : int, optional
        Seeds initial points, adaptation and sampling; the same seed and ``chain_method`` give
        the same draws. Drawn at random (and stored in ``attrs``) when omitted.
    chain_method : {"vectorized", "sequential"}
        ``"vectorized"`` runs the chains in lockstep with ``jax.vmap`` (each NUTS step costs the
        longest trajectory among the chains); ``"sequential"`` runs them one after the other
        with ``jax.lax.map``. Both compile once.
    max_tree_depth : int
        Maximum number of trajectory doublings per NUTS step.

    Returns
    -------
    az.InferenceData
        ``posterior`` (constrained free variables and deterministics, with the model's dims and
        coords), ``sample_stats`` (``diverging``, ``acceptance_rate``, ``step_size``,
        ``tree_depth``, ``n_steps``, ``energy``, ``lp``), ``observed_data`` and, when the model
        has any, ``constant_data``.

    Raises
    ------
    ValueError
        If the model has no free variables or a discrete one, or a chain cannot start from a
        point of finite log density.

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> from pymc_jaxops import sample_blackjax_nuts
    >>> with pm.Model(coords={"obs": range(50)}) as model:
    ...     mu = pm.Normal("mu", 0.0, 10.0)
    ...     sigma = pm.HalfNormal("sigma", 5.0)
    ...     y = pm.Normal("y", mu, sigma, observed=np.random.default_rng(0).normal(3, 2, 50))
    >>> idata = sample_blackjax_nuts(model, draws=200, tune=200, chains=2, random_seed=1)
    >>> idata.posterior["mu"].shape
    (2, 200)
    """
    model = modelcontext(model)
    _check_arguments(draws, tune, chains, target_accept, chain_method)
    jax_model = model_to_jax(model)
    _check_continuous(jax_model)
    try:
        import blackjax
    except ImportError as err:  # pragma: no cover - blackjax is in the [samplers] extra
        raise ImportError(
            "sample_blackjax_nuts needs BlackJAX: pip install 'pymc_jaxops[samplers]'"
        ) from err

    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    run_chain = _chain_runner(blackjax, jax_model, draws, tune, target_accept, max_tree_depth)
    if chain_method == "vectorized":
        run_chains = jax.vmap(run_chain)
    else:

        def run_chains(keys, positions):
            return jax.lax.map(lambda args: run_chain(*args), (keys, positions))

    @jax.jit
    def start(key: jax.Array) -> tuple[Params, jax.Array]:
        positions = jax.vmap(jax_model.initial_params)(jax.random.split(key, chains))
        return positions, jax.vmap(jax_model.logdensity)(positions)

    @jax.jit
    def sample(key: jax.Array, positions: Params) -> tuple[Values, dict[str, jax.Array]]:
        positions, stats = run_chains(jax.random.split(key, chains), positions)
        return jax.vmap(jax.vmap(jax_model.constrain))(positions), stats

    init_key, chains_key = jax.random.split(jax.random.key(random_seed))
    began = time.perf_counter()
    initial, initial_logps = start(init_key)
    _check_finite_start(np.asarray(initial_logps))
    posterior, stats = jax.tree.map(np.asarray, sample(chains_key, initial))
    sampling_time = time.perf_counter() - began

    coords, dims = coords_and_dims_for_inferencedata(model)
    attrs = make_attrs(
        {
            "sampling_time": sampling_time,
            "tuning_steps": tune,
            "random_seed": random_seed,
            "chain_method": chain_method,
        },
        library=blackjax,
    )
    return az.from_dict(
        posterior=posterior,
        sample_stats=stats,
        observed_data=find_observations(model),
        constant_data=find_constants(model),
        coords=coords,
        dims=dims,
        attrs=attrs,
        posterior_attrs=attrs,
    )


def _chain_runner(
    blackjax: ModuleType,
    jax_model: JaxModel,
    draws: int,
    tune: int,
    target_accept: float,
    max_tree_depth: int,
):
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    logdensity = jax_model.logdensity

    def run_chain(key: jax.Array, position: Params) -> tuple[Params, dict[str, jax.Array]]:
        tune_key, draw_key = jax.random.split(key)
        warmup = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity,
            target_acceptance_rate=target_accept,
            # Keep nothing from the warm-up trajectory: it is discarded anyway.
            adaptation_info_fn=get_filter_adapt_info_fn(),
            max_num_doublings=max_tree_depth,
        )
        (state, tuned), _ = warmup.run(tune_key, position, num_steps=tune)
        tuned = {**tuned, "max_num_doublings": max_tree_depth}
        step = blackjax.nuts(logdensity, **tuned).step

        def one_draw(state, draw_key):
            state, info = step(draw_key, state)
            stats = {
                "diverging": info.is_divergent,
                "acceptance_rate": info.acceptance_rate,
                "tree_depth": info.num_trajectory_expansions,
                "n_steps": info.num_integration_steps,
                "energy": info.energy,
                "lp": state.logdensity,
            }
            return state, (state.position, stats)

        _, (positions, stats) = jax.lax.scan(one_draw, state, jax.random.split(draw_key, draws))
        stats["step_size"] = jnp.full(draws, tuned["step_size"])
        return positions, stats

    return run_chain


def _check_arguments(
    draws: int, tune: int, chains: int, target_accept: float, chain_method: str
) -> None:
    # BlackJAX 1.7's window adaptation fails on zero steps, so tune starts at 1.
    for name, value, least in (("draws", draws, 1), ("tune", tune, 1), ("chains", chains, 1)):
        if not isinstance(value, int | np.integer) or value < least:
            raise ValueError(
                f"sample_blackjax_nuts: {name} must be an int >= {least}, got {value!r}"
            )
    if not 0.0 < target_accept < 1.0:
        raise ValueError(
            f"sample_blackjax_nuts: target_accept must be in (0, 1), got {target_accept}"
        )
    if chain_method not in ("vectorized", "sequential"):
        raise ValueError(
            f"sample_blackjax_nuts: chain_method must be 'vectorized' or 'sequential', "
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
