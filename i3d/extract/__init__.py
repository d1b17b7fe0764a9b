"""Feature extraction for any number of videos of any length.

Two modes:

* ``full``: the network runs fully convolutionally over the whole video
  (streamed in chunks with carried state, see :mod:`i3d.chunked`), one
  row per 8 input frames: ``T' = ceil(T / 8) - 1`` rows for ``T >= 9``, one
  row below that. Row ``j`` of the pooled feature averages Mixed_5c steps
  ``j`` and ``j + 1``, i.e. input frames ``[8j, 8j + 16)``.
* ``clips``: one row per window of ``clip_len`` frames every ``step``
  frames (or ``num_clips`` windows evenly spaced), each window run as a clip
  of its own and averaged over time (and space); a video shorter than a
  window gives one row for all its frames.
* ``frames``: one row per input frame, row ``i`` a clip of the ``clip_len``
  frames from ``i - clip_len // 2``, indices clamped to the video (edge
  frames repeated), averaged as in ``clips``.

Every mode takes ``crops`` views of each frame (1, 3, 5 or 10, see
:func:`i3d.video.transforms.crop_views`) as a batch dimension: rows are then
``(crops, C)``, the file ``(T', crops, C)``. ``--stream both --combine
concat`` writes one output, ``OUT/<name>.rgb+flow.<format>``, whose rows hold
the RGB features then the flow features of the same frames.

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

from typing import TYPE_CHECKING

from i3d.lazy import lazy_exports

# Resolved on first use, so that importing one part (``i3d.extract.cli``,
# whose ``i3d verify --help`` imports no torch) does not import them all.
_EXPORTS = {
    "OutputError": "i3d.atomic",
    "check_output_dir": "i3d.atomic",
    "COMBINE": "i3d.extract.extractor",
    "CONCAT": "i3d.extract.extractor",
    "DEFAULT_BATCH": "i3d.extract.extractor",
    "DEFAULT_CLIP_LEN": "i3d.extract.extractor",
    "LAYERS": "i3d.extract.extractor",
    "MODES": "i3d.extract.extractor",
    "STREAMS": "i3d.extract.extractor",
    "Extractor": "i3d.extract.extractor",
    "Mode": "i3d.extract.extractor",
    "check_collisions": "i3d.extract.inputs",
    "distributed_shard": "i3d.extract.inputs",
    "expand_inputs": "i3d.extract.inputs",
    "output_names": "i3d.extract.inputs",
    "port_names": "i3d.extract.inputs",
    "shard_inputs": "i3d.extract.inputs",
    "Summary": "i3d.extract.jobs",
    "check_port_layout": "i3d.extract.jobs",
    "extract_all": "i3d.extract.jobs",
    "FORMATS": "i3d.extract.writers",
    "LAYOUTS": "i3d.extract.writers",
    "Features": "i3d.extract.writers",
    "OutputPaths": "i3d.extract.writers",
    "is_complete": "i3d.extract.writers",
    "output_paths": "i3d.extract.writers",
    "save_features": "i3d.extract.writers",
    "verify_outputs": "i3d.extract.writers",
    "DEFAULT_CHUNK_FRAMES": "i3d.chunked",
    "POOLED": "i3d.chunked",
    "CROP_COUNTS": "i3d.video.transforms",
}

if TYPE_CHECKING:
    from i3d.atomic import OutputError, check_output_dir
    from i3d.chunked import DEFAULT_CHUNK_FRAMES, POOLED
    from i3d.extract.extractor import (
        COMBINE,
        CONCAT,
        DEFAULT_BATCH,
        DEFAULT_CLIP_LEN,
        LAYERS,
        MODES,
        STREAMS,
        Extractor,
        Mode,
    )
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
        is_complete,
        output_paths,
        save_features,
        verify_outputs,
    )
    from i3d.video.transforms import CROP_COUNTS

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
    "verify_outputs",
    "FORMATS",
    "LAYERS",
    "STREAMS",
    "MODES",
    "COMBINE",
    "CONCAT",
    "CROP_COUNTS",
    "POOLED",
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CLIP_LEN",
    "DEFAULT_BATCH",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
