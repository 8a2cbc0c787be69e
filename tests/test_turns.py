"""One compiled function called from several threads at once gives the serial answers."""

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_mode

from pymc_jaxops import as_pytensor_op
from pymc_jaxops._absorb import TAG
from pymc_jaxops._turns import holds_our_op


@as_pytensor_op
def wobble(x, a):
    return jnp.sin(x * a) ** 2 + jnp.log1p(x**2)


def _compiled(mode):
    x, a = pt.vector("x"), pt.scalar("a")
    cost = pt.sum(wobble(x, a)) + pt.sum(pt.exp(-(x**2))) + pt.log(a**2 + 1.0)
    return pytensor.function([x, a], [cost, *pt.grad(cost, [x, a])], mode=mode)


# absorbed (one XLA call), our Ops among C nodes, and PyTensor 3's Numba linker
MODES = {"absorbed": None, "C nodes": get_mode("CVM").excluding(TAG), "NUMBA": "NUMBA"}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_four_threads_sharing_one_function_get_the_serial_answers(mode):
    f = _compiled(mode)
    rng = np.random.default_rng(0)
    inputs = [(rng.normal(size=200), 0.5 + (i % 11) / 7) for i in range(800)]
    serial = [[np.array(o) for o in f(*args)] for args in inputs]

    def call(i):
        return [np.array(o) for o in f(*inputs[i])]  # copied before the next call reuses it

    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(call, range(len(inputs))))
    wrong = sum(
        not all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
        for got, want in zip(concurrent, serial, strict=True)
    )
    assert wrong == 0, f"{wrong} of {len(inputs)} answers differ from the serial ones"


def test_copies_keep_their_own_turns_and_other_functions_none():
    f = _compiled(None)
    g = f.copy()
    f(np.ones(3), 1.0), g(np.ones(3), 1.0)
    turns = f.maker.__dict__["_pymc_jaxops_turns"]
    assert turns and turns is not g.maker.__dict__["_pymc_jaxops_turns"]  # copies: in parallel
    x = pt.vector("x")
    plain = pytensor.function([x], pt.sum(x**2))
    plain(np.ones(3))
    assert plain.maker.__dict__["_pymc_jaxops_turns"] is False
    assert holds_our_op(f) and not holds_our_op(plain)


def test_a_function_that_took_turns_still_pickles_with_turns_of_its_own():
    f = _compiled(None)
    f(np.ones(3), 1.0)
    g = pickle.loads(pickle.dumps(f))  # as a chain's step is copied for its thread
    np.testing.assert_allclose(g(np.ones(3), 1.0)[0], f(np.ones(3), 1.0)[0], rtol=1e-14)
    assert g.maker.__dict__["_pymc_jaxops_turns"] is not f.maker.__dict__["_pymc_jaxops_turns"]


def test_an_op_inside_a_scan_counts():
    x = pt.vector("x")
    out = pytensor.scan(lambda v: pt.sum(wobble(v, 1.0)), sequences=[pt.stack([x, 2 * x])])
    if isinstance(out, tuple):  # pytensor 2 returns (outputs, updates)
        out = out[0]
    f = pytensor.function([x], out, mode=get_mode("CVM").excluding(TAG))
    assert holds_our_op(f)
    np.testing.assert_allclose(
        f(np.ones(2)), [2 * (np.sin(1.0) ** 2 + np.log(2)), 2 * (np.sin(2.0) ** 2 + np.log(5))]
    )


def test_threads_compiling_at_once_leave_the_default_mode_alone():
    # Each compile sets pytensor.config.mode while it runs and restores what it found; two at
    # once used to leave one's temporary mode behind for the whole process (within ~10
    # rounds of this loop, measured), and pm.sample() then stopped choosing nutpie.
    x = pt.vector("x")
    y = pt.exp(x) ** 2 + pt.log1p(x) * 3
    before = pytensor.config.mode
    modes = [get_mode("CVM"), get_mode("FAST_COMPILE")]
    for _ in range(30):
        threads = [
            threading.Thread(target=pytensor.function, args=([x], y), kwargs={"mode": m})
            for m in modes
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert pytensor.config.mode is before
