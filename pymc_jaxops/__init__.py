"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

from pymc_jaxops.model import JaxModel, model_to_jax

__all__: list[str] = ["JaxModel", "model_to_jax"]
