"""Where the weights cache lives: ``$I3D_HOME``, else ``$XDG_CACHE_HOME/i3d``, else ``~/.cache/i3d``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from i3d.errors import WeightsError

__all__ = ["cache_dir", "writable_cache_dir", "pip_folder"]


def cache_dir() -> Path:
    """``$I3D_HOME``, else ``$XDG_CACHE_HOME/i3d``, else ``~/.cache/i3d``."""
    if os.environ.get("I3D_HOME"):
        return Path(os.environ["I3D_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "i3d"


def writable_cache_dir() -> Path:
    """:func:`cache_dir`, created if needed, once files can be made in it.

    Raises:
        WeightsError: one line naming the folder and the cause (``I3D_HOME``
            set to a file, to ``/proc/x``, to a read-only folder).
    """
    root = cache_dir()
    if root.exists() and not root.is_dir():
        raise WeightsError(f"{root}: the weights cache is not a folder; set I3D_HOME to a writable folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as err:
        raise WeightsError(
            f"{root}: cannot hold the weights cache ({err.strerror or err}); set I3D_HOME to a writable folder"
        ) from None
    return root


def pip_folder() -> Path:
    """Where archives of the second source are kept."""
    return cache_dir() / "pip"
