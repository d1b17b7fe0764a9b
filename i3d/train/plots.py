"""PNG plots of a run, drawn from its ``train.jsonl`` at the end (matplotlib, the ``plot`` extra).

* ``loss.png``: the training loss (and its terms) against the step;
* ``validation.png``: every validation number (top-1, top-5, mean class
  accuracy, or mAP) against the step;
* ``confusion.png``: the last validation's confusion matrix, rows the true
  classes normalised to 1 (single-label data).

:func:`plot_run` returns the files it wrote; without matplotlib it writes
nothing and returns an empty list. Figures are drawn on the Agg canvas
directly, so the caller's pyplot backend is left alone.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from i3d.atomic import open_atomic

__all__ = ["plot_run", "LOSS_PNG", "VALIDATION_PNG", "CONFUSION_PNG", "CONFUSION_JSON"]

LOSS_PNG = "loss.png"
VALIDATION_PNG = "validation.png"
CONFUSION_PNG = "confusion.png"
CONFUSION_JSON = "confusion.json"
DPI = 100
# Inches per class on the confusion matrix's sides, within these bounds.
_CELL = 0.35
_MIN_SIDE, _MAX_SIDE = 4.0, 30.0
# Validation numbers worth a curve.
_CURVES = ("top1", "top5", "mean_class_acc", "map", "wap")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with open_atomic(path, binary=True) as f:
        f.write(buffer.getvalue())
    return path


def _records(log: Path) -> list[dict[str, Any]]:
    records = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """``confusion[true][predicted]`` counts as a heat map, each row normalised."""
    matrix = np.asarray(confusion, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = min(max(_CELL * len(classes) + 2, _MIN_SIDE), _MAX_SIDE)
    fig = _figure(side, side)
    ax = fig.add_subplot()
    image = ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, shrink=0.7)
    return _save(fig, path)


def plot_run(out: str | os.PathLike[str], log_name: str = "train.jsonl") -> list[Path]:
    """Plot the run in ``out`` (see the module docstring); the files written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    out = Path(out)
    records = _records(out / log_name)
    written = []
    train = [r for r in records if r.get("event") == "train" and r.get("loss") is not None]
    if train:
        fig = _figure(7, 4)
        ax = fig.add_subplot()
        names = [k for k in ("loss", "localization", "classification") if k in train[0]]
        for name in names:
            ax.plot([r["step"] for r in train], [r[name] for r in train], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend()
        written.append(_save(fig, out / LOSS_PNG))
    val = [r for r in records if r.get("event") == "val"]
    curves = [k for k in _CURVES if any(r.get(k) is not None for r in val)]
    if curves:
        fig = _figure(7, 4)
        ax = fig.add_subplot()
        for name in curves:
            points = [(r["step"], r[name]) for r in val if r.get(name) is not None]
            ax.plot(*zip(*points), marker="o", label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("validation")
        ax.set_ylim(0, 1)
        ax.legend()
        written.append(_save(fig, out / VALIDATION_PNG))
    confusion = out / CONFUSION_JSON
    if confusion.is_file():
        saved = json.loads(confusion.read_text(encoding="utf-8"))
        written.append(plot_confusion(saved["confusion"], saved["classes"], out / CONFUSION_PNG))
    return written
