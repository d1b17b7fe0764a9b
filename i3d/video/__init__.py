"""Video in: readers that decode in pieces, frame-rate resampling, transforms and TV-L1 flow.

Most callers need only :func:`open_input` (or :func:`load_input` for short
clips) with a checkpoint's preset::

    stream = open_input("clip.mp4", KINETICS_RGB)
    for chunk in stream.chunks(64):   # (3, t, 224, 224) float32 in [-1, 1]
        ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from i3d.lazy import lazy_exports

# Resolved on first use, so that importing one part (``i3d.video.cli``, whose
# ``i3d flow --help`` imports neither torch nor OpenCV) does not import them all.
_EXPORTS = {
    "FlowEngine": "i3d.video.flow",
    "FlowWorkerError": "i3d.video.flow",
    "FlowWriter": "i3d.video.flow",
    "tvl1_flow": "i3d.video.flow",
    "write_flow_frames": "i3d.video.flow",
    "NetworkInput": "i3d.video.inputs",
    "compute_flow": "i3d.video.inputs",
    "load_input": "i3d.video.inputs",
    "open_input": "i3d.video.inputs",
    "source_name": "i3d.video.listing",
    "CHARADES_FLOW": "i3d.video.presets",
    "CHARADES_RGB": "i3d.video.presets",
    "KINETICS_FLOW": "i3d.video.presets",
    "KINETICS_RGB": "i3d.video.presets",
    "Preprocess": "i3d.video.presets",
    "FlowArrayReader": "i3d.video.readers",
    "FrameChunk": "i3d.video.readers",
    "FrameFolderReader": "i3d.video.readers",
    "NpyReader": "i3d.video.readers",
    "VideoReader": "i3d.video.readers",
    "read_sample_gif": "i3d.video.readers",
    "tvl1_flow_batch": "i3d.video.tvl1",
}

if TYPE_CHECKING:
    from i3d.video.flow import FlowEngine, FlowWorkerError, FlowWriter, tvl1_flow, write_flow_frames
    from i3d.video.inputs import NetworkInput, compute_flow, load_input, open_input
    from i3d.video.listing import source_name
    from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB, KINETICS_FLOW, KINETICS_RGB, Preprocess
    from i3d.video.readers import (
        FlowArrayReader,
        FrameChunk,
        FrameFolderReader,
        NpyReader,
        VideoReader,
        read_sample_gif,
    )
    from i3d.video.tvl1 import tvl1_flow_batch

__all__ = [
    "Preprocess",
    "KINETICS_RGB",
    "KINETICS_FLOW",
    "CHARADES_RGB",
    "CHARADES_FLOW",
    "NetworkInput",
    "open_input",
    "load_input",
    "compute_flow",
    "source_name",
    "VideoReader",
    "FrameFolderReader",
    "NpyReader",
    "FlowArrayReader",
    "FrameChunk",
    "read_sample_gif",
    "FlowEngine",
    "FlowWorkerError",
    "FlowWriter",
    "tvl1_flow",
    "tvl1_flow_batch",
    "write_flow_frames",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
