"""DeepMind's TensorFlow checkpoints, read and converted without TensorFlow.

* :mod:`i3d.convert.tf_checkpoint`: :class:`CheckpointReader` for tensor-bundle
  checkpoints (``model.ckpt.index`` + ``model.ckpt.data-*``), CRC-checked.
* :mod:`i3d.convert.deepmind`: DeepMind's variable names to the
  :class:`~i3d.model.InceptionI3d` state dict, and :func:`convert_checkpoint`
  to ``.safetensors`` / ``.pt``.
* :mod:`i3d.convert.cli`: ``i3d convert``.
* :mod:`i3d.convert.sstable`, :mod:`i3d.convert.snappy`,
  :mod:`i3d.convert.crc32c`: the LevelDB table format, Snappy and CRC-32C
  underneath, in numpy and plain Python.

Import the submodules themselves; this package imports nothing.
"""
