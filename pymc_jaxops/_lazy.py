"""Module attributes imported on first access (PEP 562), for the package's heavy parts."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attributes(
    namespace: dict[str, Any], lazy: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a module whose ``lazy`` names (name -> the
    module defining it) are imported when first looked up, then kept in ``namespace``."""
    module = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name in lazy:
            value = getattr(importlib.import_module(lazy[name]), name)
            namespace[name] = value  # later look-ups skip this function
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
