"""One JAX CPU device per usable core, so JAX samplers can run chains side by side on CPU.

By default XLA shows a machine's CPU as a single device: NumPyro then draws its chains one
after the other ("There are not enough devices to run parallel chains") and
:func:`pymc_jaxops.sample_blackjax_nuts` cannot shard them. ``import pymc_jaxops`` sets
``jax.config.update("jax_num_cpu_devices", n)`` (the setting NumPyro's
``set_host_device_count`` reaches through ``XLA_FLAGS``) to the number of cores this process
may use, and only when all of these hold:

- the environment variable ``PYMC_JAXOPS_CPU_DEVICES`` is unset or ``auto`` (``off`` turns
  this module off; a positive integer picks the count);
- the user has set neither ``jax_num_cpu_devices`` (config or ``JAX_NUM_CPU_DEVICES``) nor
  ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``;
- JAX's backend has not started (the count is fixed once it has).

If JAX already started with fewer CPU devices than cores, one warning says how to get
parallel chains. GPUs and other accelerators are not affected.
"""

from __future__ import annotations

import os
import warnings

import jax

from pymc_jaxops import _config
from pymc_jaxops._upstream import jax as _jax

__all__ = ["ENV_VAR", "set_cpu_devices"]

ENV_VAR = _config.CPU_DEVICES
_XLA_FLAG = "--xla_force_host_platform_device_count"


def set_cpu_devices(n: int | None = None) -> int:
    """Make JAX expose ``n`` CPU devices (default: one per usable core).

    Call it before JAX runs anything. ``import pymc_jaxops`` already does this unless
    ``PYMC_JAXOPS_CPU_DEVICES=off`` or the user configured the count; call it to choose
    another count explicitly (it overrides ``jax_num_cpu_devices`` but not
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``, which JAX reads instead
    whenever ``jax_num_cpu_devices`` is unset).

    Parameters
    ----------
    n : int, optional
        Number of CPU devices, at least 1. Defaults to the number of cores this process may
        run on (``os.sched_getaffinity``).

    Returns
    -------
    int
        The number of CPU devices JAX will create.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer.
    RuntimeError
        If JAX's backend has already started, when the count can no longer change.

    Examples
    --------
    >>> import pymc_jaxops
    >>> from pymc_jaxops import set_cpu_devices
    >>> try:  # the doctest process has already run JAX
    ...     set_cpu_devices(2)
    ... except RuntimeError as err:
    ...     print(str(err).split(":")[0])
    set_cpu_devices
    """
    if n is None:
        n = _usable_cores()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_cpu_devices: n must be a positive int, got {n!r}")
    if _jax.backends_are_initialized():
        raise RuntimeError(
            "set_cpu_devices: JAX has already started, so its device count is fixed. Call "
            "it (or import pymc_jaxops) before any JAX computation, or set "
            f"{ENV_VAR}={n} or JAX_NUM_CPU_DEVICES={n} in the environment."
        )
    jax.config.update("jax_num_cpu_devices", n)
    return n


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _user_configured() -> bool:
    flags = os.environ.get("XLA_FLAGS", "")
    return _jax.cpu_device_count_set() or _XLA_FLAG in flags


def _requested_count() -> int | None:
    count = _config.cpu_devices()
    return _usable_cores() if count == 0 else count


def _configure_at_import() -> None:
    """What ``import pymc_jaxops`` does (see the module docstring)."""
    n = _requested_count()
    if n is None or _user_configured():
        return
    if not _jax.backends_are_initialized():
        if n > 1:
            jax.config.update("jax_num_cpu_devices", n)
        return
    cpus = jax.devices("cpu") if "cpu" in _jax.initialized_backends() else []
    if n > 1 and 0 < len(cpus) < n and jax.default_backend() == "cpu":
        warnings.warn(
            f"pymc_jaxops: JAX started before pymc_jaxops was imported, with {len(cpus)} CPU "
            f"device(s) for {n} cores, so JAX samplers run chains one after the other. For "
            "parallel chains import pymc_jaxops before running any JAX code, or set "
            f"JAX_NUM_CPU_DEVICES={n} in the environment; {ENV_VAR}=off silences this.",
            UserWarning,
            stacklevel=3,
        )
