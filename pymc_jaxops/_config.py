"""Every environment variable pymc_jaxops reads, read and validated here alone.

=================================  =====================================  ===========
variable                           values                                 default
=================================  =====================================  ===========
``PYMC_JAXOPS_CPU_DEVICES``        ``auto``, ``off``, a positive integer  ``auto``
``PYMC_JAXOPS_SAFE_PROCESSES``     ``on``, ``off``                        ``on``
``PYMC_JAXOPS_CHAIN_THREADS``      ``auto``, ``always``, ``off``          ``auto``
``PYMC_JAXOPS_UNVERIFIED``         ``skip``, ``apply``                    ``skip``
``PYMC_JAXOPS_NUTPIE_BACKEND``     ``auto``, ``pymc``                     ``auto``
``PYMC_JAXOPS_TIME_PLANS``         ``on``, ``off``                        ``on``
``PYMC_JAXOPS_XLA_CACHE``          ``auto``, ``off``, a directory         ``auto``
=================================  =====================================  ===========

``on``/``off`` also accept ``1``/``0``, ``true``/``false`` and ``yes``/``no``. A value
outside these raises :class:`ConfigError` naming the variable and the values it takes.
"""

from __future__ import annotations

import os

__all__ = [
    "CHAIN_THREADS",
    "CPU_DEVICES",
    "NUTPIE_BACKEND",
    "SAFE_PROCESSES",
    "TIME_PLANS",
    "UNVERIFIED",
    "XLA_CACHE",
    "ConfigError",
    "chain_threads",
    "cpu_devices",
    "nutpie_backend",
    "safe_processes",
    "time_plans",
    "unverified",
    "xla_cache",
]

CPU_DEVICES = "PYMC_JAXOPS_CPU_DEVICES"
SAFE_PROCESSES = "PYMC_JAXOPS_SAFE_PROCESSES"
CHAIN_THREADS = "PYMC_JAXOPS_CHAIN_THREADS"
UNVERIFIED = "PYMC_JAXOPS_UNVERIFIED"
NUTPIE_BACKEND = "PYMC_JAXOPS_NUTPIE_BACKEND"
TIME_PLANS = "PYMC_JAXOPS_TIME_PLANS"
XLA_CACHE = "PYMC_JAXOPS_XLA_CACHE"

_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")


class ConfigError(ValueError):
    """An environment variable of pymc_jaxops holds a value it does not take."""


def _raw(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower() or default


def _bad(name: str, allowed: str) -> ConfigError:
    return ConfigError(
        f"pymc_jaxops: the environment variable {name} must be {allowed}; "
        f"got {os.environ.get(name)!r}. Set it to one of those or unset it."
    )


def _switch(name: str, default: str) -> bool:
    value = _raw(name, default)
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise _bad(name, "'on' or 'off' (or 1/0, true/false, yes/no)")


def cpu_devices() -> int | None:
    """``PYMC_JAXOPS_CPU_DEVICES``: None for ``off``, 0 for ``auto``, else the count."""
    value = _raw(CPU_DEVICES, "auto")
    if value in _OFF:
        return None
    if value == "auto":
        return 0
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise _bad(CPU_DEVICES, "'auto', 'off' or a positive integer")


def safe_processes() -> bool:
    """``PYMC_JAXOPS_SAFE_PROCESSES``: whether PyMC's chain processes start safely."""
    return _switch(SAFE_PROCESSES, "on")


def chain_threads() -> str:
    """``PYMC_JAXOPS_CHAIN_THREADS``: ``"auto"``, ``"always"`` or ``"off"``."""
    value = _raw(CHAIN_THREADS, "auto")
    if value in ("auto", "always"):
        return value
    if value in _OFF:
        return "off"
    raise _bad(CHAIN_THREADS, "'auto', 'always' or 'off'")


def unverified() -> str:
    """``PYMC_JAXOPS_UNVERIFIED``: what to do with library versions this release was not
    verified with: ``"skip"`` the touches that rely on their private names, or
    ``"apply"`` them anyway (to check a new release)."""
    value = _raw(UNVERIFIED, "skip")
    if value in ("skip", "apply"):
        return value
    raise _bad(UNVERIFIED, "'skip' or 'apply'")


def nutpie_backend() -> str:
    """``PYMC_JAXOPS_NUTPIE_BACKEND``: ``"auto"`` (``pm.sample()`` runs nutpie's JAX backend
    for a model holding our Ops that compiles to JAX) or ``"pymc"`` (the backend PyMC
    chooses)."""
    value = _raw(NUTPIE_BACKEND, "auto")
    if value in ("auto", "pymc"):
        return value
    raise _bad(NUTPIE_BACKEND, "'auto' or 'pymc'")


def time_plans() -> bool:
    """``PYMC_JAXOPS_TIME_PLANS``: whether a wrapped function taking 100 µs or more has its
    equivalent plans (fused, split, forward + gradient-only) timed once on its first call
    (``on``), or runs the default plan untimed (``off``: no extra compilation)."""
    return _switch(TIME_PLANS, "on")


def xla_cache() -> str:
    """``PYMC_JAXOPS_XLA_CACHE``: where compiled XLA programs are kept for later sessions
    and chain processes: ``"auto"`` (a folder in PyTensor's compile directory), ``"off"``,
    or the path of a folder (made if missing)."""
    value = _raw(XLA_CACHE, "auto")
    if value in ("auto", *_ON):
        return "auto"
    if value in _OFF:
        return "off"
    path = os.path.expanduser(os.environ[XLA_CACHE].strip())
    if os.path.exists(path) and not os.path.isdir(path):
        raise _bad(XLA_CACHE, "'auto', 'off' or the path of a folder (this path is a file)")
    return path
