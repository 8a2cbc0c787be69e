"""The registry of touches: each change pymc_jaxops makes to another library, undoable.

A touch is declared where its code lives (``dispatch.py`` declares its ``jax_funcify``
registration, say) and applied by :func:`install`, so importing a module changes nothing by
itself. A touch declared after :func:`install` ran (a module imported on first use) is
applied at once.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from pymc_jaxops._upstream import versions

__all__ = ["Touch", "apply", "declare", "install", "installed", "revert", "skipped", "uninstall"]

_logger = logging.getLogger("pymc_jaxops")

Undo = Callable[[], None]


@dataclass(frozen=True)
class Touch:
    """One change to another library.

    ``apply`` makes the change and returns what undoes it. ``private`` says whether it
    relies on names the library does not document: such a touch is skipped, with a warning,
    when the running version of ``library`` is one this release was not verified with.
    """

    name: str
    library: str
    apply: Callable[[], Undo | None]
    private: bool = False


_LOCK = threading.RLock()
_DECLARED: dict[str, Touch] = {}
_UNDO: dict[str, Undo] = {}
_SKIPPED: dict[str, str] = {}
_INSTALLED = False


def declare(touch: Touch) -> Touch:
    """Add ``touch`` to what :func:`install` applies (at once, if it already ran)."""
    with _LOCK:
        _DECLARED[touch.name] = touch
        problems = _apply([touch], versions.unverified()) if _INSTALLED else []
    if problems:
        _warn(problems)
    return touch


def _apply(touches: list[Touch], unverified: dict[str, str]) -> list[str]:
    problems = []
    for touch in touches:
        if touch.name in _UNDO:
            continue
        if touch.private and touch.library in unverified:
            _SKIPPED[touch.name] = unverified[touch.library]
            problems.append(f"{touch.name} (skipped: {unverified[touch.library]})")
            continue
        try:
            undo = touch.apply()
        except (ImportError, AttributeError, TypeError, KeyError) as error:
            # A private name that moved: leave the library as it is (fail closed).
            _SKIPPED[touch.name] = f"{type(error).__name__}: {error}"
            problems.append(f"{touch.name} ({type(error).__name__}: {error})")
            continue
        _SKIPPED.pop(touch.name, None)
        _UNDO[touch.name] = undo or (lambda: None)
    return problems


def apply(touch: Touch) -> bool:
    """Declare and apply one touch now; whether it is applied."""
    with _LOCK:
        _DECLARED[touch.name] = touch
        _apply([touch], versions.unverified())
        return touch.name in _UNDO


def revert(name: str) -> None:
    """Undo one touch; it stays declared, so :func:`install` applies it again."""
    with _LOCK:
        undo = _UNDO.pop(name, None)
    if undo is not None:
        undo()


def install() -> None:
    """Apply every declared touch (``import pymc_jaxops`` calls this); idempotent.

    A touch that relies on private names of a library whose running version was not
    verified, or whose names have moved, is skipped with one warning naming what is lost.
    """
    global _INSTALLED
    with _LOCK:
        problems = _apply(list(_DECLARED.values()), versions.unverified())
        _INSTALLED = True
    if problems:
        _warn(problems)


def _warn(problems: list[str]) -> None:
    warnings.warn(
        "pymc_jaxops: left these changes to other libraries out, because the installed "
        "versions are not those this release was verified with, or a name they need has "
        "moved: " + "; ".join(problems) + ". What they provide is off (see "
        "docs/architecture.md, 'The upstream layer'); install the versions pymc_jaxops "
        "requires, or set PYMC_JAXOPS_UNVERIFIED=apply to try them anyway.",
        RuntimeWarning,
        stacklevel=4,
    )


def uninstall() -> None:
    """Undo every applied touch, newest first: PyMC and friends as without pymc_jaxops."""
    global _INSTALLED
    with _LOCK:
        for name in reversed(list(_UNDO)):
            try:
                _UNDO.pop(name)()
            except Exception as error:  # pragma: no cover - undo of a moved name
                _logger.warning("pymc_jaxops: could not undo %s: %s", name, error)
        _INSTALLED = False


def installed(name: str | None = None) -> bool:
    """Whether every declared touch (or the one called ``name``) is applied."""
    with _LOCK:
        if name is not None:
            return name in _UNDO
        return _INSTALLED and all(n in _UNDO for n in _DECLARED)


def skipped() -> dict[str, str]:
    """The touches :func:`install` left out, and why."""
    with _LOCK:
        return dict(_SKIPPED)
