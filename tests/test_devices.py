"""One JAX CPU device per core at import, never over a user's setting; NumPyro runs parallel.

The device count is fixed once JAX's backend starts, so every case runs in a fresh process.
"""

from pathlib import Path

import jax
import pytest

from pymc_jaxops import devices, set_cpu_devices
from tests import _subprocess

SCRIPTS = Path(__file__).parent / "scripts"


def _probe(*args: str, **env: str) -> tuple[int, list[str]]:
    code, out, err = _subprocess.run_script(
        SCRIPTS / "devices_probe.py", *args, env=_subprocess.child_env(**env), timeout=180
    )
    assert code == 0, err[-3000:]
    lines = out.splitlines()
    count = int(next(line for line in lines if line.startswith("DEVICES")).split()[1])
    return count, [line for line in lines if line.startswith("WARNING")]


@pytest.mark.slow
def test_import_gives_one_cpu_device_per_usable_core():
    count, warnings = _probe()
    assert count == devices._usable_cores()
    assert not warnings


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PYMC_JAXOPS_CPU_DEVICES": "off"}, 1),
        ({"PYMC_JAXOPS_CPU_DEVICES": "3"}, 3),
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, 3),
        # A user's own setting wins over ours.
        ({"JAX_NUM_CPU_DEVICES": "1", "PYMC_JAXOPS_CPU_DEVICES": "4"}, 1),
    ],
)
def test_the_switch_and_user_settings_are_honoured(env, expected):
    assert _probe(**env)[0] == expected


@pytest.mark.slow
def test_a_started_backend_is_left_alone_with_one_hint():
    count, warnings = _probe("started", PYMC_JAXOPS_CPU_DEVICES="2")
    assert count == 1
    assert len(warnings) == 1
    assert "JAX_NUM_CPU_DEVICES=2" in warnings[0] and "PYMC_JAXOPS_CPU_DEVICES=off" in warnings[0]


def test_set_cpu_devices_after_jax_started_says_what_to_do():
    jax.devices()  # this test process has started JAX
    with pytest.raises(RuntimeError, match="set_cpu_devices: JAX has already started"):
        set_cpu_devices(2)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_set_cpu_devices_refuses_bad_counts(n):
    with pytest.raises(ValueError, match="set_cpu_devices: n must be a positive int"):
        set_cpu_devices(n)


def test_a_bad_environment_value_is_refused(monkeypatch):
    monkeypatch.setenv(devices.ENV_VAR, "many")
    with pytest.raises(ValueError, match="PYMC_JAXOPS_CPU_DEVICES must be 'auto', 'off'"):
        devices._requested_count()


@pytest.mark.slow
def test_numpyro_runs_two_chains_in_parallel_and_recovers_the_truth():
    """Fresh process, default settings (2 devices forced only where the machine has 1 core)."""
    env = _subprocess.child_env(PYMC_JAXOPS_CPU_DEVICES="2")
    code, out, err = _subprocess.run_script(SCRIPTS / "numpyro_parallel.py", env=env, timeout=420)
    assert code == 0, err[-3000:]
    lines = out.splitlines()
    assert "DEVICES 2" in lines
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert not [w for w in warnings if "not enough devices" in w], warnings
    assert "not enough devices" not in err
    _, chains, draws, mu, sigma = next(ln for ln in lines if ln.startswith("RESULT")).split()
    assert (int(chains), int(draws)) == (2, 300)
    assert abs(float(mu) - 1.5) < 0.15 and abs(float(sigma) - 0.7) < 0.1
