"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

from pymc_jaxops.blackjax_nuts import sample_blackjax_nuts
from pymc_jaxops.model import JaxModel, model_to_jax

__all__: list[str] = ["JaxModel", "model_to_jax", "sample_blackjax_nuts"]
