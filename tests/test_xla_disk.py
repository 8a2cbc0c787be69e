"""XLA executables on disk (``_xla_disk``): loaded by later processes, keyed by the program."""

import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest
from pytensor.compile.mode import get_default_mode

from pymc_jaxops import _caches, _xla_disk, as_pytensor_op, clear_caches
from pymc_jaxops._absorb import TAG
from pymc_jaxops._config import XLA_CACHE, ConfigError, xla_cache
from tests import _subprocess
from tests._compiles import Compiled

ON_DISK = "XLA executables on disk"


def _entries(where):
    return sorted(p.name for p in where.glob("*.xla")) if where.exists() else []


def _forget_in_memory():
    """What a new session starts with: nothing in memory, the disk as it is."""
    _caches.clear_all(keep=(ON_DISK,))
    jax.clear_caches()


@as_pytensor_op
def _curve(theta, t):
    return theta[0] * jnp.exp(-theta[1] * t) + jnp.sin(theta[2] * t)


def _model(y):
    t = np.linspace(0.0, 3.0, y.size)
    with pm.Model() as model:
        theta = pm.Normal("theta", 1.0, 1.0, shape=3)
        pm.Normal("y", _curve(theta, t), 0.5, observed=y)
    return model


def _logp_dlogp(model, point):
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    value, grad = fn(point)
    return float(value), np.array(grad)


def _reference(y, point):
    """The same model's logp and gradient with absorption off (our Op among PyTensor's)."""
    fn = _model(y).logp_dlogp_function(ravel_inputs=True, mode=get_default_mode().excluding(TAG))
    fn.set_extra_values({})
    value, grad = fn(point)
    return float(value), np.array(grad)


@pytest.fixture
def y(rng):
    return rng.normal(size=40)


def test_a_session_after_the_first_loads_the_program_and_compiles_nothing(tmp_path, y):
    where = tmp_path / "xla"
    point = np.array([0.9, 0.4, 1.3])
    with Compiled() as first:
        got = _logp_dlogp(_model(y), point)
    assert first.names, "the first session compiles"
    assert _entries(where), "and keeps what it compiled"
    _forget_in_memory()
    with Compiled() as later:
        again = _logp_dlogp(_model(y), point)
    assert later.names == []
    want = _reference(y, point)
    for result in (got, again):
        assert result[0] == pytest.approx(want[0], rel=1e-10)
        np.testing.assert_allclose(result[1], want[1], rtol=1e-9)


def test_other_data_is_another_program(tmp_path, y):
    where = tmp_path / "xla"
    point = np.array([0.9, 0.4, 1.3])
    _logp_dlogp(_model(y), point)
    kept = _entries(where)
    _forget_in_memory()
    other = y + 1.0
    with Compiled() as compiled:
        got = _logp_dlogp(_model(other), point)
    assert compiled.names, "data baked into the program make it another program"
    assert len(_entries(where)) > len(kept)
    want = _reference(other, point)
    assert got[0] == pytest.approx(want[0], rel=1e-10)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9)


def test_a_second_process_loads_the_parents_program(tmp_path):
    """A chain process or a new session: same script, same folder, no XLA compile."""
    script = tmp_path / "session.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np, pymc as pm, jax.numpy as jnp
            from pymc_jaxops import as_pytensor_op
            from tests._compiles import Compiled

            @as_pytensor_op
            def curve(theta, t):
                return theta[0] * jnp.exp(-theta[1] * t) + jnp.sin(theta[2] * t)

            t = np.linspace(0.0, 3.0, 30)
            y = np.cos(t)
            with pm.Model() as model:
                theta = pm.Normal("theta", 1.0, 1.0, shape=3)
                pm.Normal("y", curve(theta, t), 0.5, observed=y)
            fn = model.logp_dlogp_function(ravel_inputs=True)
            fn.set_extra_values({})
            with Compiled() as compiled:
                value, grad = fn(np.array([0.9, 0.4, 1.3]))
            print("COMPILED", len(compiled.names))
            print("VALUE", repr(float(value)), *map(repr, map(float, grad)))
            """
        )
    )
    env = _subprocess.child_env(**{XLA_CACHE: str(tmp_path / "xla")})
    code, first, err = _subprocess.run_script(script, env=env, timeout=240)
    assert code == 0, err
    code, second, err = _subprocess.run_script(script, env=env, timeout=240)
    assert code == 0, err

    def line(out, word):
        return next(ln.split()[1:] for ln in out.splitlines() if ln.startswith(word))

    assert int(line(first, "COMPILED")[0]) > 0
    assert int(line(second, "COMPILED")[0]) == 0
    assert line(second, "VALUE") == line(first, "VALUE")


def test_programs_calling_back_into_the_process_stay_off_disk(tmp_path):
    where = tmp_path / "xla"
    seen = []

    @as_pytensor_op
    def noisy(x):
        jax.debug.callback(lambda v: seen.append(float(v)), x.sum())
        return jnp.sum(x**2)

    import pytensor.tensor as pt
    from pytensor import function

    x = pt.dvector("x")
    fn = function([x], noisy(x))
    assert float(fn(np.array([1.0, 2.0]))) == 5.0
    assert seen == [3.0]
    assert _entries(where) == []


def test_a_torn_file_is_compiled_again(tmp_path, y):
    where = tmp_path / "xla"
    point = np.array([0.9, 0.4, 1.3])
    _logp_dlogp(_model(y), point)
    for path in where.glob("*.xla"):
        path.write_bytes(path.read_bytes()[:100])
    _forget_in_memory()
    with Compiled() as compiled:
        got = _logp_dlogp(_model(y), point)
    assert compiled.names
    want = _reference(y, point)
    assert got[0] == pytest.approx(want[0], rel=1e-10)
    _forget_in_memory()
    with Compiled() as compiled:
        _logp_dlogp(_model(y), point)
    assert compiled.names == [], "the torn file was written again whole"


def test_each_input_signature_has_its_executable():
    square_sum = _xla_disk.on_disk(jax.jit(lambda x: jnp.sum(x * x)))
    assert float(square_sum(np.arange(3.0))) == 5.0
    assert float(square_sum(np.arange(4.0))) == 14.0
    assert float(square_sum(np.arange(3, dtype=np.int32))) == 5
    assert float(square_sum(np.arange(3.0))) == 5.0
    with pytest.raises(TypeError):
        square_sum("not an array")


def test_inside_a_trace_it_is_jax_jit():
    double = _xla_disk.on_disk(jax.jit(lambda x: 2.0 * x))
    double(np.ones(2))  # an executable for concrete float64 arrays exists now
    assert float(jax.grad(lambda x: double(x).sum())(np.ones(2))[0]) == 2.0
    np.testing.assert_array_equal(jax.vmap(double)(np.ones((3, 2))), 2.0 * np.ones((3, 2)))


def test_the_folder_is_pruned_oldest_first(tmp_path, monkeypatch):
    where = tmp_path / "xla"
    fns = [_xla_disk.on_disk(jax.jit(lambda x, k=k: jnp.sin(x) * k)) for k in range(3)]
    for fn in fns[:2]:
        fn(np.ones(50))
    old = _entries(where)
    assert len(old) == 2
    size = max(p.stat().st_size for p in where.glob("*.xla"))
    os.utime(where / old[0], (0, 0))
    monkeypatch.setattr(_xla_disk, "_MAX_BYTES", 2 * size + size // 2)
    fns[2](np.ones(50))
    left = _entries(where)
    assert len(left) == 2 and old[0] not in left


def test_off_keeps_nothing_and_clear_caches_empties_the_folder(tmp_path, monkeypatch):
    where = tmp_path / "xla"
    _xla_disk.on_disk(jax.jit(jnp.cos))(np.ones(3))
    assert _entries(where)
    clear_caches()
    assert _entries(where) == []
    monkeypatch.setenv(XLA_CACHE, "off")
    assert _xla_disk.directory() is None
    _xla_disk.on_disk(jax.jit(jnp.tan))(np.ones(3))
    assert _entries(where) == []


def test_the_setting_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(XLA_CACHE, "auto")
    assert xla_cache() == "auto"
    import pytensor

    assert _xla_disk.directory().parent == pytensor.config.compiledir
    monkeypatch.setenv(XLA_CACHE, "~/somewhere")
    assert xla_cache() == os.path.expanduser("~/somewhere")
    a_file = tmp_path / "file"
    a_file.write_text("")
    monkeypatch.setenv(XLA_CACHE, str(a_file))
    with pytest.raises(ConfigError, match=XLA_CACHE):
        xla_cache()


def test_the_package_imports_without_touching_the_folder(tmp_path):
    where = tmp_path / "never"
    result = _subprocess.run(
        ["-c", "import pymc_jaxops"], timeout=120, extra_env={XLA_CACHE: str(where)}
    )
    assert result.returncode == 0, result.err
    assert not where.exists()
