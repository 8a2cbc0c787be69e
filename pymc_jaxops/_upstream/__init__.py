"""Every place pymc_jaxops reaches into PyMC, PyTensor, JAX, Numba or multiprocessing.

The rest of the package imports only those libraries' public names and this layer. Here
live the private names it uses (one module per library), the differences between the two
supported lines (:mod:`.versions`), and every change it makes to another library: each
dispatch registration, rewrite and patch is a *touch*, declared next to its code and
applied by :func:`install` (``import pymc_jaxops`` calls it), undone by :func:`uninstall`.
A touch that needs private names of a library whose installed version this release was not
verified with is skipped with a warning (``PYMC_JAXOPS_UNVERIFIED=apply`` applies it
anyway, to check a new release); one whose names have moved is skipped the same way.

Examples
--------
>>> import pymc_jaxops
>>> from pymc_jaxops import _upstream
>>> _upstream.installed()
True
>>> _upstream.LINE in ("pymc5", "pymc6")
True
"""

from __future__ import annotations

from pymc_jaxops._upstream._touches import (
    Touch,
    declare,
    install,
    installed,
    skipped,
    uninstall,
)
from pymc_jaxops._upstream.versions import LINE

__all__ = ["LINE", "Touch", "declare", "install", "installed", "skipped", "uninstall"]
