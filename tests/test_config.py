"""Environment variables: read in one module, a bad value names the variable and its values."""

import pytest

import pymc_jaxops
from pymc_jaxops import _config


@pytest.mark.parametrize(
    ("name", "read", "value", "expected"),
    [
        ("PYMC_JAXOPS_CPU_DEVICES", _config.cpu_devices, "off", None),
        ("PYMC_JAXOPS_CPU_DEVICES", _config.cpu_devices, "auto", 0),
        ("PYMC_JAXOPS_CPU_DEVICES", _config.cpu_devices, " 3 ", 3),
        ("PYMC_JAXOPS_SAFE_PROCESSES", _config.safe_processes, "0", False),
        ("PYMC_JAXOPS_SAFE_PROCESSES", _config.safe_processes, "Yes", True),
        ("PYMC_JAXOPS_CHAIN_THREADS", _config.chain_threads, "false", "off"),
        ("PYMC_JAXOPS_CHAIN_THREADS", _config.chain_threads, "always", "always"),
        ("PYMC_JAXOPS_UNVERIFIED", _config.unverified, "apply", "apply"),
        ("PYMC_JAXOPS_NUTPIE_BACKEND", _config.nutpie_backend, "PyMC", "pymc"),
        ("PYMC_JAXOPS_TIME_PLANS", _config.time_plans, "off", False),
        ("PYMC_JAXOPS_XLA_CACHE", _config.xla_cache, "No", "off"),
        ("PYMC_JAXOPS_XLA_CACHE", _config.xla_cache, "on", "auto"),
        ("PYMC_JAXOPS_XLA_CACHE", _config.xla_cache, " /tmp/Some Folder ", "/tmp/Some Folder"),
    ],
)
def test_values_are_read(monkeypatch, name, read, value, expected):
    monkeypatch.setenv(name, value)
    assert read() == expected


@pytest.mark.parametrize(
    ("name", "read", "allowed"),
    [
        ("PYMC_JAXOPS_CPU_DEVICES", _config.cpu_devices, "'auto', 'off' or a positive integer"),
        ("PYMC_JAXOPS_SAFE_PROCESSES", _config.safe_processes, "'on' or 'off'"),
        ("PYMC_JAXOPS_CHAIN_THREADS", _config.chain_threads, "'auto', 'always' or 'off'"),
        ("PYMC_JAXOPS_UNVERIFIED", _config.unverified, "'skip' or 'apply'"),
        ("PYMC_JAXOPS_NUTPIE_BACKEND", _config.nutpie_backend, "'auto' or 'pymc'"),
        ("PYMC_JAXOPS_TIME_PLANS", _config.time_plans, "'on' or 'off'"),
    ],
)
def test_a_bad_value_raises_with_the_allowed_values(monkeypatch, name, read, allowed):
    monkeypatch.setenv(name, "sometimes")
    with pytest.raises(pymc_jaxops.ConfigError, match=rf"{name} must be {allowed}.*'sometimes'"):
        read()


def test_unset_means_the_default(monkeypatch):
    for name in (
        "PYMC_JAXOPS_CPU_DEVICES",
        "PYMC_JAXOPS_SAFE_PROCESSES",
        "PYMC_JAXOPS_CHAIN_THREADS",
        "PYMC_JAXOPS_UNVERIFIED",
        "PYMC_JAXOPS_XLA_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert (_config.cpu_devices(), _config.safe_processes()) == (0, True)
    assert (_config.chain_threads(), _config.unverified()) == ("auto", "skip")
    assert _config.xla_cache() == "auto"


def test_every_error_class_is_exported_at_the_top_level():
    from pymc_jaxops import errors

    for name in errors.__all__:
        assert getattr(pymc_jaxops, name) is getattr(errors, name)
        assert name in pymc_jaxops.__all__
