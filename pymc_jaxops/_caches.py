"""Every cache pymc_jaxops keeps registers itself here, so ``clear_caches()`` empties all.

Examples
--------
>>> import pymc_jaxops
>>> from pymc_jaxops import _caches
>>> "jitted JAX functions" in _caches.registered()
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection

__all__ = ["clear_all", "register", "registered"]

_CLEARERS: dict[str, Callable[[], None]] = {}


def register(name: str, clear: Callable[[], None]) -> None:
    """Make ``clear`` part of :func:`clear_all` under ``name`` (what the cache holds)."""
    _CLEARERS[name] = clear


def registered() -> list[str]:
    """The names of the registered caches."""
    return list(_CLEARERS)


def clear_all(keep: Collection[str] = ()) -> None:
    """Empty every registered cache but those named in ``keep``."""
    for name, clear in list(_CLEARERS.items()):
        if name not in keep:
            clear()
