from __future__ import annotations

import sys

import numpy as np
import pytest

from i3d.charades.annotations import Action, Video
from i3d.charades.metrics import mean_average_precision
from i3d.errors import I3DError

plots = pytest.importorskip("i3d.charades.plots")
pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def test_timeline_shows_top_and_ground_truth_classes(tmp_path):
    video = Video("V", 8.0, (Action(2, 1.0, 3.0), Action(9, 4.0, 7.5)))
    scores = np.zeros((157, 64))
    scores[4] = np.linspace(0, 5, 64)
    scores[2, 8:24] = 3.0
    path = tmp_path / "timeline.png"
    shown = plots.plot_timeline(path, video, scores, top=2)
    assert shown == [4, 2, 9]
    assert path.read_bytes()[:8] == PNG


@pytest.mark.slow
def test_per_class_ap_chart(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.random((40, 157)) < 0.2
    labels[:, 7] = False
    result = mean_average_precision(rng.normal(size=(40, 157)), labels)
    path = tmp_path / "ap.png"
    plots.plot_per_class_ap(path, result, [f"name {c}" for c in range(157)], title="test")
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["ap.png"]


def test_without_matplotlib_plots_raise_one_line(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(I3DError, match=r"^plots need matplotlib: pip install 'i3d\[plot\]'$"):
        plots.plot_timeline(tmp_path / "t.png", Video("V", 1.0), np.zeros((157, 4)))
    assert list(tmp_path.iterdir()) == []
