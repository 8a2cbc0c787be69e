"""One of two processes of a jax.distributed BlackJAX run on CPU: ``PROCESS_ID PORT``."""

import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)

from scaleout_model import build_model, report  # noqa: E402

import pymc_jaxops  # noqa: E402

print("DEVICES", jax.local_device_count(), jax.device_count(), flush=True)
idata = pymc_jaxops.sample_blackjax_nuts(
    build_model(), draws=300, tune=300, chains=4, random_seed=3, progressbar=False
)
if jax.process_index() == 0:
    report(idata)
jax.distributed.shutdown()
