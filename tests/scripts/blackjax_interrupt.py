"""Ctrl-C during sample_blackjax_nuts: stops within a chunk and returns the draws so far.

A thread waits until ten draws are done (a DEBUG record per chunk), then sends this
process SIGINT and records when; the main thread prints how long the return took.
"""

import logging
import os
import signal
import threading
import time
import warnings

from scaleout_model import build_model

import pymc_jaxops

# Explicit, whatever disposition the test runner (nohup, CI) passed down.
signal.signal(signal.SIGINT, signal.default_int_handler)
drawing = threading.Event()
sent_at: list[float] = []


class _Watch(logging.Handler):
    def emit(self, record):
        # "sample_blackjax_nuts: draw <done>/<total>": interrupt once a few draws exist (a
        # count, not a guess at how long chunks take on this machine).
        message = record.getMessage()
        if message.startswith("sample_blackjax_nuts: draw "):
            done = int(message.rsplit(" ", 1)[1].split("/")[0])
            if done >= 10:
                drawing.set()


log = logging.getLogger("pymc_jaxops.to_jax.blackjax_nuts")
log.setLevel(logging.DEBUG)
log.addHandler(_Watch())


def interrupt():
    drawing.wait(timeout=300)
    sent_at.append(time.perf_counter())
    print("SIGINT", flush=True)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt, daemon=True).start()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    idata = pymc_jaxops.sample_blackjax_nuts(
        build_model(), draws=10**6, tune=50, chains=2, random_seed=1, progressbar=False
    )
returned = time.perf_counter()
print("DRAWS", idata.posterior.sizes["draw"], flush=True)
print("LATENCY", returned - sent_at[0], flush=True)
for w in caught:
    print("WARNING", str(w.message), flush=True)
