"""A package's exports resolved on first use, so that importing the package imports none of its modules.

``__getattr__ = lazy_exports(__name__, {"Name": "package.module", ...})`` in
a package's ``__init__.py`` (PEP 562): ``package.Name`` imports
``package.module`` when first asked for. ``i3d``, ``i3d.extract``,
``i3d.fvd``, ``i3d.video`` and ``i3d.weights`` export so, which keeps
``i3d SUBCOMMAND --help`` free of torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``; ``exports`` maps each name to the module defining it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
