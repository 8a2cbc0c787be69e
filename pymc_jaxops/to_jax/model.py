"""A PyMC model as plain JAX functions over dicts keyed by variable name.

:func:`model_to_jax` compiles the model's PyTensor graphs with PyTensor's JAX backend
(``jax_funcify``), so every Op with a JAX registration - including JAX functions wrapped as
PyTensor Ops - is inlined into ordinary JAX code. Random variables draw from JAX keys derived
from the single key passed in, and no RNG state is returned, so the samplers compose with
``jax.vmap`` over keys like any other JAX function.
"""

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.initial_point import make_initial_point_expression
from pymc.model import modelcontext
from pytensor.compile.mode import JAX
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.replace import clone_replace
from pytensor.graph.traversal import graph_inputs
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.tensor.random.type import RandomType
from pytensor.tensor.variable import TensorVariable

from pymc_jaxops.precision import require_x64
from pymc_jaxops.to_jax import _rv_samplers  # noqa: F401  (registers missing JAX samplers)

__all__ = ["JaxModel", "model_to_jax"]

_Params = dict[str, jax.Array]
"""Unconstrained parameters: one array per value variable (e.g. ``"sigma_log__"``)."""

_Values = dict[str, jax.Array]
"""Constrained values: one array per model variable name (e.g. ``"sigma"``)."""

# PyMC retries a jittered initial point this many times when its logp is not finite.
_JITTER_MAX_RETRIES = 10

_PARAMS_HINT = (
    "Params live in the unconstrained space, named after PyMC's value variables "
    "(e.g. 'sigma_log__'); JaxModel.param_spec lists them."
)
_VALUES_HINT = (
    "Values are constrained and keyed by model variable name (e.g. 'sigma'), as in a "
    "posterior draw; JaxModel.constrain(params) maps params to them."
)

# The JAX backend cannot raise from inside traced code, so it drops non-parameter assertions
# (e.g. shape checks) and warns on every compile; the warning is noise for our users.
_SKIPPED_ASSERT = re.compile(r"Skipping .* as JAX tracing would remove it")


@dataclass(frozen=True)
class JaxModel:
    """Pure JAX functions of a PyMC model, built by :func:`model_to_jax`.

    Every function is ``jax.jit``-compiled, takes and returns dicts keyed by variable name,
    and composes with ``jax.grad``, ``jax.vmap``, ``jax.jit`` and ``jax.hessian``.

    Attributes
    ----------
    logdensity : Callable[[Params], jax.Array]
        ``logdensity(params)``: the model's joint log density (scalar float) at unconstrained
        ``params``, keyed by value-variable name (``"sigma_log__"``), including the Jacobian
        terms of the transforms. It equals ``model.compile_logp()``.
    constrain : Callable[[Params], Values]
        ``constrain(params)``: the constrained value of every free variable and every
        deterministic, keyed by model name (``"sigma"``).
    initial_params : Callable[[jax.Array], Params]
        ``initial_params(key)``: PyMC's jittered initial point (the one ``pm.sample`` starts
        NUTS from: uniform(-1, 1) jitter on continuous parameters), drawn from ``key``;
        redrawn up to 10 times while its log density is not finite.
    sample_prior : Callable[[jax.Array], Values]
        ``sample_prior(key)``: one joint draw of every free, observed and deterministic
        variable from the prior. Potentials are ignored, as in ``pm.sample_prior_predictive``.
    sample_posterior_predictive : Callable[[jax.Array, Values], Values]
        ``sample_posterior_predictive(key, values)``: one draw of every observed variable given
        constrained ``values`` of the free variables (a posterior draw, or the output of
        ``constrain``); extra deterministic keys are ignored.
    param_spec : Mapping[str, jax.ShapeDtypeStruct]
        Shape and dtype of each unconstrained parameter, in ``model.value_vars`` order.
    """

    logdensity: Callable[[_Params], jax.Array]
    constrain: Callable[[_Params], _Values]
    initial_params: Callable[[jax.Array], _Params]
    sample_prior: Callable[[jax.Array], _Values]
    sample_posterior_predictive: Callable[[jax.Array, _Values], _Values]
    param_spec: Mapping[str, jax.ShapeDtypeStruct]


def model_to_jax(model: pm.Model | None = None) -> JaxModel:
    """Compile a PyMC model into pure JAX functions over dicts keyed by variable name.

    Parameters
    ----------
    model : pm.Model, optional
        The model; defaults to the one on the ``with`` context stack.

    Returns
    -------
    JaxModel
        ``logdensity``, ``constrain``, ``initial_params``, ``sample_prior`` and
        ``sample_posterior_predictive``, plus ``param_spec``.

    Notes
    -----
    The current values of ``pm.Data`` containers and coordinate lengths are baked in as
    constants; after ``pm.set_data`` call ``model_to_jax`` again. Computation is in float64:
    JAX's x64 mode must be on (PyTensor's JAX backend turns it on when imported with the
    default ``floatX="float64"``), and an error says so if it was turned off.

    Examples
    --------
    >>> import jax
    >>> import pymc as pm
    >>> from pymc_jaxops import model_to_jax
    >>> with pm.Model() as model:
    ...     sigma = pm.HalfNormal("sigma")
    ...     y = pm.Normal("y", 0.0, sigma, observed=[0.3, -1.2])
    >>> jm = model_to_jax(model)
    >>> params = jm.initial_params(jax.random.key(0))
    >>> sorted(params)
    ['sigma_log__']
    >>> grad = jax.grad(jm.logdensity)(params)
    >>> draws = jax.vmap(jm.sample_prior)(jax.random.split(jax.random.key(1), 100))
    >>> draws["y"].shape
    (100, 2)
    """
    model = modelcontext(model)
    _require_x64(model)
    check_bounds = bool(getattr(model, "check_bounds", True))

    value_vars = list(model.value_vars)
    shapes = model.eval_rv_shapes()
    param_spec = {v.name: _spec(v, shapes) for v in value_vars}
    free_names = [rv.name for rv in model.free_RVs]
    det_names = [d.name for d in model.deterministics]
    obs_names = [rv.name for rv in model.observed_RVs]

    logp_fn = _JaxGraph(value_vars, [model.logp()], check_bounds)
    constrain_fn = _JaxGraph(
        value_vars, model.replace_rvs_by_values(model.free_RVs + model.deterministics)
    )
    prior_fn = _JaxGraph([], model.free_RVs + model.observed_RVs + model.deterministics)
    free_inputs = [rv.type(name=rv.name) for rv in model.free_RVs]
    ppc_graph = clone_replace(
        list(model.observed_RVs), replace=dict(zip(model.free_RVs, free_inputs, strict=True))
    )
    ppc_fn = _JaxGraph(free_inputs, ppc_graph)
    init_fn = _JaxGraph(
        [],
        make_initial_point_expression(
            free_rvs=model.free_RVs,
            rvs_to_transforms=model.rvs_to_transforms,
            initval_strategies=model.rvs_to_initial_values,
            # PyMC's jitter is uniform(-1, 1) noise, defined for continuous variables only.
            jitter_rvs={rv for rv in model.free_RVs if rv.dtype.startswith("float")},
            return_transformed=True,
        ),
    )
    has_potentials = bool(model.potentials)

    def read_params(params: Mapping[str, Any], where: str) -> list[jax.Array]:
        return _read(params, param_spec, where, "unconstrained", _PARAMS_HINT)

    @jax.jit
    def logdensity(params: _Params) -> jax.Array:
        (logp,) = logp_fn(None, read_params(params, "logdensity"))
        return logp

    @jax.jit
    def constrain(params: _Params) -> _Values:
        outs = constrain_fn(None, read_params(params, "constrain"))
        return dict(zip(free_names + det_names, outs, strict=True))

    @jax.jit
    def initial_params(key: jax.Array) -> _Params:
        checked_key = _as_key(key)

        def draw(attempt: jax.Array) -> tuple[_Params, jax.Array]:
            values = init_fn(jax.random.fold_in(checked_key, attempt), [])
            point = dict(zip(param_spec, values, strict=True))
            return point, logdensity(point)

        def not_done(carry):
            attempt, _, logp = carry
            return (attempt < _JITTER_MAX_RETRIES) & ~jnp.isfinite(logp)

        def retry(carry):
            attempt = carry[0] + 1
            return (attempt, *draw(attempt))

        first = jnp.asarray(0, dtype=jnp.int32)
        _, point, _ = jax.lax.while_loop(not_done, retry, (first, *draw(first)))
        return point

    @jax.jit
    def sample_prior(key: jax.Array) -> _Values:
        if has_potentials:
            warnings.warn(
                "sample_prior ignores the model's Potentials, as pm.sample_prior_predictive "
                "does; the draws come from the model without them.",
                UserWarning,
                stacklevel=2,
            )
        outs = prior_fn(_as_key(key), [])
        return dict(zip(free_names + obs_names + det_names, outs, strict=True))

    free_spec = {rv.name: _spec(rv, shapes) for rv in model.free_RVs}

    @jax.jit
    def sample_posterior_predictive(key: jax.Array, values: _Values) -> _Values:
        free_values = {k: v for k, v in values.items() if k not in det_names}
        where = "sample_posterior_predictive"
        inputs = _read(free_values, free_spec, where, "constrained", _VALUES_HINT)
        return dict(zip(obs_names, ppc_fn(_as_key(key), inputs), strict=True))

    return JaxModel(
        logdensity=logdensity,
        constrain=constrain,
        initial_params=initial_params,
        sample_prior=sample_prior,
        sample_posterior_predictive=sample_posterior_predictive,
        param_spec=param_spec,
    )


class _JaxGraph:
    """A PyTensor graph as a JAX function ``(key, inputs) -> outputs``.

    Shared variables are frozen to their current values, except RNGs: each becomes an input
    fed a fresh state derived from ``key``, so one key drives every random variable and no
    state is threaded back out.
    """

    def __init__(
        self, inputs: Sequence[Variable], outputs: Sequence[Variable], check_bounds: bool = True
    ):
        shared = [v for v in graph_inputs(outputs) if isinstance(v, SharedVariable)]
        rngs: dict[Variable, Variable] = {
            v: v.type() for v in shared if isinstance(v.type, RandomType)
        }
        # Data is read now, so later ``pm.set_data`` calls cannot leak into this function.
        frozen: dict[Variable, Variable] = {
            v: pt.constant(v.get_value(borrow=False), name=v.name)
            for v in shared
            if not isinstance(v.type, RandomType)
        }
        self._n_rngs = len(rngs)
        self._graph = (
            [*inputs, *rngs.values()],
            clone_replace(list(outputs), replace={**rngs, **frozen}),
            check_bounds,
        )
        # Rewriting and funcifying wait for the first call: a user after logdensity alone
        # pays nothing for the samplers, and a distribution without a JAX sampler only fails
        # the function that draws from it.
        self._fn: Callable[..., Sequence[Any]] | None = None
        self._dtypes: list[str] = []
        self._graph_dtypes = [getattr(v.type, "dtype", "") for v in (*inputs, *outputs)]

    def _build(self) -> None:
        inputs, outputs, check_bounds = self._graph
        fgraph = FunctionGraph(inputs, outputs, clone=True)
        # Same choice as ``model.compile_logp``: invalid parameters give -inf, not an error.
        check = (
            "local_check_parameter_to_ninf_switch"
            if check_bounds
            else "local_remove_check_parameter"
        )
        JAX.including(check).optimizer.rewrite(fgraph)
        # Constant-folded outputs come back as Python scalars and JAX's Bernoulli as bool;
        # restore the dtypes PyTensor promised.
        self._dtypes = [o.type.dtype for o in fgraph.outputs]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SKIPPED_ASSERT.pattern)
            self._fn = jax_funcify(fgraph)

    def __call__(self, key: jax.Array | None, inputs: Sequence[jax.Array]) -> list[jax.Array]:
        # Where the value is produced: a jitted JaxModel function re-traces when x64 is
        # switched off after model_to_jax, and must fail then rather than run in 32-bit.
        require_x64(self._graph_dtypes, "This JaxModel")
        if self._fn is None:
            # The first call usually happens under a jit trace; the constants jax_funcify
            # creates must be concrete arrays, not tracers that would leak out of it.
            with jax.ensure_compile_time_eval():
                self._build()
        assert self._fn is not None
        rng_states = []
        if self._n_rngs:
            assert key is not None
            # PyTensor's JAX RandomVariables read and advance ``state["jax_state"]``.
            keys = jax.random.split(key, self._n_rngs)
            rng_states = [{"jax_state": k} for k in keys]
        outs = self._fn(*inputs, *rng_states)
        return [jnp.asarray(o, dtype=d) for o, d in zip(outs, self._dtypes, strict=True)]


def _as_key(key: Any) -> jax.Array:
    if key is None:
        raise TypeError("this function needs a JAX PRNG key, e.g. jax.random.key(0)")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (is_typed and key.shape == ()) and not (key.dtype == jnp.uint32 and key.shape == (2,)):
        raise TypeError(
            f"expected one JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got an array of dtype {key.dtype} and shape {key.shape}; to draw many samples, "
            "jax.vmap over jax.random.split(key, n)"
        )
    return key


def _read(
    given: Mapping[str, Any],
    spec: Mapping[str, jax.ShapeDtypeStruct],
    where: str,
    kind: str,
    hint: str,
) -> list[jax.Array]:
    if not isinstance(given, Mapping):
        raise TypeError(f"{where} takes a dict of {kind} arrays keyed by name, got {given!r}")
    missing = [k for k in spec if k not in given]
    extra = [k for k in given if k not in spec]
    if missing or extra:
        raise KeyError(
            f"{where} expects {kind} values for {list(spec)}; missing {missing}, "
            f"unexpected {extra}. {hint}"
        )
    arrays = []
    for name, s in spec.items():
        x = jnp.asarray(given[name], dtype=s.dtype)
        if not _shape_fits(x.shape, s.shape):
            raise ValueError(
                f"{where}: {name!r} has shape {x.shape}, but the model expects {s.shape}; "
                "to evaluate many points, jax.vmap over a leading axis"
            )
        arrays.append(x)
    return arrays


def _shape_fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or e == s for s, e in zip(shape, expected, strict=True)
    )


def _spec(var: TensorVariable, shapes: Mapping[str, tuple[int, ...]]) -> jax.ShapeDtypeStruct:
    # Static types often leave lengths unknown; the model evaluates its current ones.
    shape = tuple(int(n) for n in shapes[str(var.name)])
    return jax.ShapeDtypeStruct(shape, np.dtype(var.dtype))


def _require_x64(model: pm.Model) -> None:
    require_x64([v.dtype for v in model.value_vars + model.observed_RVs], "The model")
