"""Charades: annotations, the official evaluation, submission files, datasets and plots.

* :mod:`i3d.charades.annotations`: the official CSVs, the classes file, the
  old PyTorch port's JSON split, per-frame labels.
* :mod:`i3d.charades.metrics`: classification and localization mAP exactly
  as ``Charades_v1_classify.m`` and ``Charades_v1_localize.m``.
* :mod:`i3d.charades.submission`: submission files from model outputs.
* :mod:`i3d.charades.datasets`: torch datasets for training and evaluation.
* :mod:`i3d.charades.plots`: timelines and per-class AP charts (matplotlib).
* :mod:`i3d.charades.cli`: ``i3d eval classify | localize | timeline``.

Import the submodules themselves; this package imports nothing.
"""
