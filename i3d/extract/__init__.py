"""Feature extraction for any number of videos of any length.

Two modes:

* ``full``: the network runs fully convolutionally over the whole video
  (streamed in chunks with carried state, see :mod:`i3d.streaming`), one
  row per 8 input frames: ``T' = ceil(T / 8) - 1`` rows for ``T >= 9``, one
  row below that. Row ``j`` of the pooled feature averages Mixed_5c steps
  ``j`` and ``j + 1``, i.e. input frames ``[8j, 8j + 16)``.
* ``clips``: one row per window of ``clip_len`` frames every ``step``
  frames, each window run as a clip of its own and averaged over time (and
  space); a video shorter than a window gives one row for all its frames.

The parts:

* :mod:`~i3d.extract.extractor`: one input's features (the engine's user);
* :mod:`~i3d.extract.inputs`: which inputs, their output names, sharding;
* :mod:`~i3d.extract.writers`: output formats, sidecars and checksums;
* :mod:`~i3d.extract.pipeline`: decoding worker processes and their messages;
* :mod:`~i3d.extract.jobs`: the batch run (locks, skips, failures, full disks).

Output ``OUT/<name>.<stream>.<format>`` (``<name>``: the input's path
relative to the deepest folder holding every input, extension kept, e.g.
``OUT/a/b.mp4.rgb.npy``), described by ``OUT/<name>.<stream>.<format>.json``,
written last; runs skip complete outputs and redo the rest.
"""

from __future__ import annotations

from i3d.atomic import OutputError, check_output_dir
from i3d.extract.extractor import DEFAULT_BATCH, DEFAULT_CLIP_LEN, LAYERS, STREAMS, Extractor, Mode
from i3d.extract.inputs import (
    check_collisions,
    distributed_shard,
    expand_inputs,
    output_names,
    port_names,
    shard_inputs,
)
from i3d.extract.jobs import Summary, check_port_layout, extract_all
from i3d.extract.writers import (
    FORMATS,
    LAYOUTS,
    Features,
    OutputPaths,
    file_sha256,
    is_complete,
    output_paths,
    save_features,
    verify_outputs,
)
from i3d.streaming import DEFAULT_CHUNK_FRAMES, POOLED

__all__ = [
    "Extractor",
    "Features",
    "Summary",
    "OutputError",
    "OutputPaths",
    "Mode",
    "extract_all",
    "expand_inputs",
    "shard_inputs",
    "distributed_shard",
    "output_names",
    "port_names",
    "check_port_layout",
    "LAYOUTS",
    "output_paths",
    "check_collisions",
    "check_output_dir",
    "is_complete",
    "save_features",
    "file_sha256",
    "verify_outputs",
    "FORMATS",
    "LAYERS",
    "STREAMS",
    "POOLED",
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CLIP_LEN",
    "DEFAULT_BATCH",
]
