"""A PyMC model as plain JAX functions, and samplers built on them.

``model_to_jax(model)`` returns a ``JaxModel`` of pure jitted JAX functions;
``sample_blackjax_nuts(model, ...)`` runs BlackJAX NUTS on it. Both are imported on first
use: they pull in PyMC's model machinery, ArviZ and BlackJAX. The JAX samplers PyTensor
lacks (``_rv_samplers``) register when ``pymc_jaxops`` is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pymc_jaxops import _lazy

if TYPE_CHECKING:
    from pymc_jaxops.to_jax.blackjax_nuts import sample_blackjax_nuts
    from pymc_jaxops.to_jax.model import JaxModel, model_to_jax

# Public name -> module that defines it, imported on first attribute access.
_LAZY = {
    "JaxModel": "pymc_jaxops.to_jax.model",
    "model_to_jax": "pymc_jaxops.to_jax.model",
    "sample_blackjax_nuts": "pymc_jaxops.to_jax.blackjax_nuts",
}

__all__ = ["JaxModel", "model_to_jax", "sample_blackjax_nuts"]


__getattr__, __dir__ = _lazy.attributes(globals(), _LAZY)
