"""ArviZ: results as ``pm.sample`` returns them on each line.

arviz 0.23 (pymc 5) builds ``InferenceData`` from keyword groups; arviz 1.x (pymc 6)
builds an xarray ``DataTree`` from a dict of groups, and ``make_attrs`` moved to
``arviz_base``.
"""

from __future__ import annotations

from typing import Any

from pymc_jaxops._upstream.versions import at_least

__all__ = ["ARVIZ1", "from_groups"]

ARVIZ1 = at_least("arviz", 1)


def from_groups(
    groups: dict[str, Any],
    *,
    coords: dict[str, Any],
    dims: dict[str, Any],
    attrs: dict[str, Any],
    library: Any,
) -> Any:
    """``InferenceData`` (arviz 0.x) or ``DataTree`` (arviz 1.x) of ``groups``, with the
    run's ``attrs`` and the library that made the draws on the posterior and the whole."""
    if ARVIZ1:
        from arviz_base import from_dict, make_attrs

        full = make_attrs(attrs, inference_library=library)
        # Per group: the whole tree ("/") and the posterior carry the run's attributes.
        return from_dict(groups, coords=coords, dims=dims, attrs={"/": full, "posterior": full})
    import arviz as az
    from arviz.data.base import make_attrs as make_attrs0

    full = make_attrs0(attrs, library=library)
    return az.from_dict(**groups, coords=coords, dims=dims, attrs=full, posterior_attrs=full)
