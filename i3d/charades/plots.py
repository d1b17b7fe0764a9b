"""PNG plots of Charades results (matplotlib, the ``plot`` extra).

matplotlib is imported inside the functions, and figures are drawn on the
Agg canvas directly, so importing this module costs nothing and the caller's
pyplot backend is left alone. Without matplotlib the functions raise
:class:`i3d.errors.I3DError` saying how to install it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from i3d.atomic import open_atomic
from i3d.charades.annotations import Video
from i3d.charades.metrics import EvalResult
from i3d.errors import I3DError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
# Inches: one lane per class in the timeline, one bar per class in the chart.
_LANE_HEIGHT = 1.1
_BAR_WIDTH = 0.11
_MIN_WIDTH = 6.0


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise I3DError("plots need matplotlib: pip install 'i3d[plot]'") from None

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with open_atomic(path, binary=True) as f:
        f.write(buffer.getvalue())


def _label(index: int, class_names: Sequence[str] | None) -> str:
    code = f"c{index:03d}"
    return f"{code} {class_names[index]}" if class_names is not None else code


def timeline_classes(video: Video, scores: ArrayLike, top: int) -> list[int]:
    """The classes a timeline shows: the ``top`` classes by peak score, then any ground-truth class not among them.

    Args:
        scores: ``(C, T)`` per-frame scores.
    """
    peak = np.asarray(scores, dtype=np.float64).max(axis=1)
    # Stable, so that equal peaks keep class order.
    best = [int(c) for c in np.argsort(-peak, kind="stable")[:top]]
    truth = sorted(video.classes - set(best))
    return best + truth


def plot_timeline(
    path: str | os.PathLike[str],
    video: Video,
    scores: ArrayLike,
    class_names: Sequence[str] | None = None,
    top: int = 5,
    times: ArrayLike | None = None,
) -> list[int]:
    """Write a PNG timeline of one video: ground-truth segments against predicted scores.

    One lane per class (see :func:`timeline_classes`): the class's annotated
    segments are shaded and its score over time is drawn on top.

    Args:
        path: the PNG to write (atomically).
        video: the ground truth of the video.
        scores: ``(C, T)`` per-frame scores (logits or probabilities).
        class_names: names by class index, for the lane titles.
        top: how many of the best-scoring classes to show.
        times: ``(T,)`` time of each score in seconds; by default ``T`` equal
            steps from 0, ``t_k = k / T * length`` (the spacing of the 25
            localization frames and of frames on disk).

    Returns:
        The class indices shown, top to bottom.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"expected scores (C, T) with T >= 1, got shape {scores.shape}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    steps = scores.shape[1]
    t = np.arange(steps) / steps * video.length if times is None else np.asarray(times, dtype=np.float64)
    if t.shape != (steps,):
        raise ValueError(f"times has shape {t.shape}, expected ({steps},)")
    shown = timeline_classes(video, scores, top)
    fig = _new_figure(_MIN_WIDTH * 1.5, _LANE_HEIGHT * len(shown) + 0.8)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    finite = scores[shown][np.isfinite(scores[shown])]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    margin = 0.05 * (high - low) if high > low else 0.5
    for ax, c in zip(axes, shown):
        for action in video.actions:
            if action.index == c:
                ax.axvspan(action.start, action.end, color="tab:green", alpha=0.3, linewidth=0)
        ax.plot(t, scores[c], color="tab:blue", linewidth=1.2, marker="." if steps <= 50 else None)
        ax.set_ylim(low - margin, high + margin)
        ax.set_xlim(0.0, max(video.length, float(t[-1])))
        ax.set_title(_label(c, class_names), fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("time (s): shaded = ground truth, line = predicted score")
    fig.suptitle(f"video {video.id}", fontsize=10)
    _save(fig, path)
    return shown


def plot_per_class_ap(
    path: str | os.PathLike[str],
    result: EvalResult,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> None:
    """Write a PNG bar chart of the per-class APs of an evaluation, best first.

    Classes without positives are left out, as from the mean; the mAP is
    drawn as a horizontal line. Bars are labelled with class codes, or codes
    and names when ``class_names`` is given.
    """
    ranked = sorted(((ap, c) for c, ap in enumerate(result.per_class) if ap is not None), key=lambda item: -item[0])
    fig = _new_figure(max(_MIN_WIDTH, _BAR_WIDTH * len(ranked) + 1.5), 5.0 if class_names is None else 8.0)
    ax = fig.add_subplot()
    x = np.arange(len(ranked))
    ax.bar(x, [ap for ap, _ in ranked], color="tab:blue")
    if ranked:
        ax.axhline(result.map, color="tab:red", linewidth=1, label=f"mAP {result.map:.4f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x, [_label(c, class_names) for _, c in ranked], rotation=90, fontsize=5)
    ax.set_xlim(-1, max(len(ranked), 1))
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("average precision")
    heading = f"{title}: " if title else ""
    excluded = len(result.per_class) - result.classes
    ax.set_title(
        f"{heading}mAP {result.map:.4f}, wAP {result.wap:.4f} over {result.classes} classes"
        + (f" ({excluded} without positives left out)" if excluded else ""),
        fontsize=9,
    )
    _save(fig, path)
