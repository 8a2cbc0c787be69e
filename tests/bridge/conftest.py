import jax

# The bridge passes float64 arrays; tests compare against float64 references.
jax.config.update("jax_enable_x64", True)
