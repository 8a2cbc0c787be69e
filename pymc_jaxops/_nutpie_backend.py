"""``pm.sample()`` on pymc 6 runs nutpie; for a model with a JAX likelihood, on its JAX backend.

With nutpie installed, pymc 6's ``pm.sample()`` samples NUTS-only models with nutpie, and
nutpie compiles the model with the backend of the default linker: Numba. A model that holds
one of our Ops then runs its logp+dlogp as one XLA call launched from Numba's object mode
(``pymc_jaxops._absorb``), and Numba compiles everything else around it. nutpie's JAX
backend compiles the whole model as one JAX program instead; on the seed HMM it started
sampling 2.4x sooner and took 14% less time per gradient (``benchmarks/bench_pymc6.py``).
So when *all* of these hold, ``pm.sample()`` runs nutpie with ``backend="jax"``, and says
so in PyMC's log:

* nutpie is the sampler (PyMC chose it, or ``nuts_sampler="nutpie"``);
* the user chose no backend: no ``backend=`` and no ``compile_kwargs={"mode": ...}``;
* the model's log density holds one of our Ops, and every node of it has a JAX
  implementation.

``PYMC_JAXOPS_NUTPIE_BACKEND=pymc`` keeps PyMC's choice (and ``pm.sample(backend="numba")``
asks for Numba explicitly). pymc 5 never runs nutpie by default; nothing changes there.

Examples
--------
>>> import pymc_jaxops
>>> from pymc_jaxops import _nutpie_backend
>>> _nutpie_backend.steer("numpyro", None, {})  # other samplers are left alone
{}
"""

from __future__ import annotations

import logging
from typing import Any

from pymc_jaxops import _config
from pymc_jaxops._upstream import _touches
from pymc_jaxops._upstream.pymc import external_nuts_hook
from pymc_jaxops._upstream.versions import at_least

__all__ = ["steer"]

_logger = logging.getLogger("pymc")


def _holds_our_op_and_compiles_to_jax(model: Any) -> bool:
    from pytensor.compile.mode import get_mode
    from pytensor.graph.basic import Constant
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.traversal import ancestors
    from pytensor.link.jax.dispatch import jax_funcify

    from pymc_jaxops._ops import JaxOp

    logp = model.logp()
    variables = list(ancestors([logp]))
    if not any(v.owner is not None and isinstance(v.owner.op, JaxOp) for v in variables):
        return False
    # Every root is an input: the value variables, and data (pm.Data) held in shared ones.
    roots = [v for v in variables if v.owner is None and not isinstance(v, Constant)]
    try:
        fgraph = FunctionGraph(roots, [logp], clone=True)
        get_mode("JAX").optimizer.rewrite(fgraph)
        jax_funcify(fgraph)
    except Exception as error:  # an Op without a JAX implementation: Numba it is
        _logger.debug("pymc_jaxops: the model does not compile to JAX: %s", error)
        return False
    return True


def steer(sampler: str, model: Any, compile_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The compile keyword arguments ``pm.sample`` should give ``sampler`` for ``model``
    (see the module docstring)."""
    if sampler != "nutpie" or "mode" in compile_kwargs or "backend" in compile_kwargs:
        return compile_kwargs
    if _config.nutpie_backend() != "auto" or not _holds_our_op_and_compiles_to_jax(model):
        return compile_kwargs
    from pytensor.compile.mode import get_mode

    _logger.info(
        "pymc_jaxops: nutpie samples this model on its JAX backend (the whole model in one "
        "JAX program); PYMC_JAXOPS_NUTPIE_BACKEND=pymc or pm.sample(backend='numba') keeps "
        "Numba"
    )
    return {**compile_kwargs, "mode": get_mode("JAX")}


if at_least("pymc", 6):
    _touches.declare(external_nuts_hook("pymc nutpie backend for JAX likelihoods", steer))
