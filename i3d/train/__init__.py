"""Fine-tuning I3D on Charades with the PyTorch port's published recipe.

* :mod:`i3d.train.recipe`: :class:`~i3d.train.recipe.Recipe`, the
  hyper-parameters, and ``CHARADES_RECIPE``, the published ones.
* :mod:`i3d.train.loss`: per-frame localization plus clip classification BCE.
* :mod:`i3d.train.data`: the reproducible, resumable stream of training batches.
* :mod:`i3d.train.loop`: :class:`~i3d.train.loop.Trainer` (accumulation,
  mixed precision, DistributedDataParallel, validation mAP, resume).
* :mod:`i3d.train.checkpoint`: checkpoints that load with ``weights_only=True``.
* :mod:`i3d.train.distributed`: ``torchrun`` environment and process group.
* :mod:`i3d.train.cli`: ``i3d train``.

Import the submodules themselves; this package imports nothing.
"""
