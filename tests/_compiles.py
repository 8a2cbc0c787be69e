"""Count the programs XLA compiles (JAX logs each one under ``jax.log_compiles``)."""

import logging
import re

import jax


class Compiled(logging.Handler):
    """The programs XLA compiles meanwhile, by name (JAX logs each with ``log_compiles``)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.names: list[str] = []
        self.staged = 0

    def emit(self, record):
        found = re.search(r"Finished XLA compilation of jit\((.*?)\)", record.getMessage())
        # jit(stage): JAX moving NumPy constants to the device with jnp.array, counted apart.
        if found and found.group(1) == "stage":
            self.staged += 1
        elif found:
            self.names.append(found.group(1))

    def __enter__(self):
        self._cm = jax.log_compiles(True)
        self._cm.__enter__()
        logging.getLogger("jax").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("jax").removeHandler(self)
        self._cm.__exit__(*exc)
