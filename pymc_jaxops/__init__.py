"""Put any JAX function inside a PyMC model, and run any model on any sampler."""

__all__: list[str] = []
