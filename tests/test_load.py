"""Many calls and concurrent calls: no memory growth, no cross-talk between threads."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._ops import JaxValueAndGradOp


@as_pytensor_op
def ripple(x, a):
    return jnp.sum(jnp.sin(x * a) ** 2 + jnp.log1p(x**2))


def _compiled():
    x, a = pt.vector("x"), pt.scalar("a")
    out = ripple(x, a)
    return pytensor.function([x, a], [out, *pt.grad(out, [x, a])])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this platform")


@pytest.mark.slow
def test_many_logp_grad_calls_do_not_grow_memory():
    f = _compiled()
    x = np.linspace(-1, 1, 100)
    for _ in range(2000):  # warm up allocator pools and JAX caches
        f(x, 1.3)
    before = _rss_mb()
    for i in range(20000):
        f(x, 1.0 + i * 1e-5)
    growth = _rss_mb() - before
    # The full 100,000-call figure is in benchmarks/README.md (bench_load.py).
    assert growth < 20, f"resident memory grew {growth:.1f} MB over 20,000 calls"


def test_four_threads_give_the_serial_results():
    f = _compiled()
    rng = np.random.default_rng(0)
    inputs = [(rng.normal(size=300), float(i % 7) / 3) for i in range(200)]
    serial = [f(*args) for args in inputs]
    # PyTensor Function objects keep their own storage and are not re-entrant, so each
    # thread gets a copy; the copies share one Op and one jitted JAX callable.
    copies = [f.copy() for _ in range(4)]
    shared_ops = {n.op for c in copies for n in c.maker.fgraph.apply_nodes}
    assert len([o for o in shared_ops if isinstance(o, JaxValueAndGradOp)]) == 1

    def run(k):
        g = copies[k % 4]
        return [g(*inputs[i]) for i in range(k % 4, len(inputs), 4)]

    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(run, range(4)))
    for k, chunk in enumerate(chunks):
        for j, got in enumerate(chunk):
            want = serial[k + 4 * j]
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


def test_jitted_callable_is_safe_to_share_between_threads():
    x, a = pt.vector("x"), pt.scalar("a")
    op = ripple(x, a).owner.op
    rng = np.random.default_rng(1)
    inputs = [(rng.normal(size=50), np.float64(i)) for i in range(100)]
    serial = [float(op.jitted(*args)[0]) for args in inputs]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda args: float(op.jitted(*args)[0]), inputs))
    assert concurrent == serial
