"""Fine-tuning I3D: Charades with the PyTorch port's published recipe, or any labelled videos.

* :mod:`i3d.train.recipe`: :class:`~i3d.train.recipe.Recipe`, the
  hyper-parameters, and ``CHARADES_RECIPE``, the published ones.
* :mod:`i3d.train.config`: the TOML config (defaults, ``--config``, flags;
  the resolved copy in the run folder). ``configs/charades.toml`` ships.
* :mod:`i3d.train.datasets`: video lists from class folders, plain CSV, Kinetics' CSV.
* :mod:`i3d.train.clips`: the pre-flight index, training and validation clips.
* :mod:`i3d.train.loss`: Charades' per-frame loss; clip cross-entropy / BCE.
* :mod:`i3d.train.finetune`: frozen trunk, learning rate per part, schedules.
* :mod:`i3d.train.data`: the reproducible, resumable stream of training batches.
* :mod:`i3d.train.loop`: :class:`~i3d.train.loop.Trainer` (accumulation,
  mixed precision, DistributedDataParallel, resume).
* :mod:`i3d.train.validation`: Charades mAP, clip accuracy or mAP; :mod:`i3d.train.metrics`.
* :mod:`i3d.train.runlog`: ``train.jsonl``, progress bar, TensorBoard; :mod:`i3d.train.plots`: PNGs.
* :mod:`i3d.train.checkpoint`: checkpoints that load with ``weights_only=True``.
* :mod:`i3d.train.export`: ``model.safetensors`` with its class names.
* :mod:`i3d.train.probe`: a linear probe on extracted features.
* :mod:`i3d.train.evaluate`: a trained model's accuracy on a labelled list;
  :mod:`i3d.train.eval_cli`: ``i3d eval accuracy``.
* :mod:`i3d.train.distributed`: ``torchrun`` environment and process group.
* :mod:`i3d.train.cli`: ``i3d train``'s flags and config; :mod:`i3d.train.runner`:
  its work (imported when it runs, so that ``--help`` imports no torch).
* :mod:`i3d.train.choices`: the flags' choices, without torch.

Import the submodules themselves; this package imports nothing.
"""
