"""JAX: whether its runtime has started, and the device count set before it does.

Both live in ``jax._src.xla_bridge`` (private on both lines: jax 0.10 and 0.12).
"""

from __future__ import annotations

__all__ = ["backends_are_initialized", "cpu_device_count_set", "initialized_backends"]


def backends_are_initialized() -> bool:
    """Whether JAX's runtime (its client and thread pools) exists in this process.

    Assumes it does if JAX no longer says: forking a live runtime hangs, so the answer
    must err towards "live".
    """
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - JAX moved it
        return True
    probe = getattr(xla_bridge, "backends_are_initialized", None)
    return True if probe is None else bool(probe())


def cpu_device_count_set() -> bool:
    """Whether the user set ``jax_num_cpu_devices`` (config or ``JAX_NUM_CPU_DEVICES``)."""
    from jax._src import xla_bridge

    return xla_bridge.num_cpu_devices.value >= 0


def initialized_backends() -> dict[str, object]:
    """The backends JAX has started, by platform name."""
    from jax._src import xla_bridge

    return dict(xla_bridge.backends())
