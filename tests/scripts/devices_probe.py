"""Print how many CPU devices JAX has after ``import pymc_jaxops``, in the given situation."""

import sys
import warnings

import jax

if sys.argv[1:] == ["started"]:
    jax.numpy.ones(1)  # JAX's backend starts before pymc_jaxops is imported

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pymc_jaxops  # noqa: F401

for w in caught:
    print("WARNING", str(w.message), flush=True)
print("DEVICES", len(jax.devices("cpu")), flush=True)
