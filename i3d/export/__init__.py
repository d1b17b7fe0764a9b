"""The network as a file other runtimes load: ONNX, OpenVINO IR, TorchScript
(:mod:`i3d.export.writers`; ``i3d export`` in :mod:`i3d.export.cli`).

Importing this package stays cheap (no torch), so that ``i3d export --help``
is quick; the API is resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["FORMATS", "export_model", "export_weights", "ExportCheck", "ExportError"]

from i3d.export.formats import FORMATS

if TYPE_CHECKING:
    from i3d.export.writers import ExportCheck, ExportError, export_model, export_weights


def __getattr__(name: str):
    if name in __all__:
        from i3d.export import writers

        return getattr(writers, name)
    raise AttributeError(f"module 'i3d.export' has no attribute {name!r}")
