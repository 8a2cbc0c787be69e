"""The two supported lines, and which installed versions this release was verified with.

=========  ========  =========  ========  ========  ========  ======
line       Python    pymc       pytensor  jax       numba     arviz
=========  ========  =========  ========  ========  ========  ======
``pymc6``  3.12+     6.4.x      3.3.x     0.12.x    0.68.x    1.x
``pymc5``  3.11      5.28.x     2.38.x    0.10.x    0.65.x    0.23.x
=========  ========  =========  ========  ========  ========  ======

A library version outside both lines is *unverified*: touches that rely on its private
names are skipped (see ``_touches.install``) unless ``PYMC_JAXOPS_UNVERIFIED=apply``.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import PackageNotFoundError, version

from pymc_jaxops import _config

__all__ = ["LINE", "VERIFIED", "at_least", "installed_version", "unverified"]

# Per library: the release prefixes this release was verified with, one per line.
VERIFIED: dict[str, tuple[tuple[int, ...], ...]] = {
    "pymc": ((6, 4), (5, 28)),
    "pytensor": ((3, 3), (2, 38)),
    "jax": ((0, 12), (0, 10)),
    "numba": ((0, 68), (0, 65)),
    "arviz": ((1,), (0, 23)),
}


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() < len(piece):
            break
    return tuple(parts)


@functools.cache
def installed_version(library: str) -> tuple[int, ...] | None:
    """The release numbers of ``library`` as installed, or None if it is not."""
    try:
        return _release(version(library))
    except PackageNotFoundError:
        return None


def at_least(library: str, *release: int) -> bool:
    """Whether the installed ``library`` is at least ``release`` (False if absent)."""
    found = installed_version(library)
    return found is not None and found >= release


def unverified() -> dict[str, str]:
    """Installed libraries outside the verified lines: name -> why (empty if all are)."""
    if _config.unverified() == "apply":
        return {}
    problems = {}
    for library, prefixes in VERIFIED.items():
        found = installed_version(library)
        if found is None or any(found[: len(p)] == p for p in prefixes):
            continue
        wanted = " or ".join(".".join(map(str, p)) + ".x" for p in prefixes)
        problems[library] = f"{library} {'.'.join(map(str, found))} is not {wanted}"
    return problems


LINE = "pymc6" if at_least("pymc", 6) else "pymc5"
"""Which supported line the installed PyMC belongs to."""
