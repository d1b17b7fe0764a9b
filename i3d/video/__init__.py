"""Video in: streaming readers, frame-rate resampling, transforms and TV-L1 flow.

Most callers need only :func:`open_input` (or :func:`load_input` for short
clips) with a checkpoint's preset::

    stream = open_input("clip.mp4", KINETICS_RGB)
    for chunk in stream.chunks(64):   # (3, t, 224, 224) float32 in [-1, 1]
        ...
"""

from i3d.video.flow import FlowEngine, FlowWorkerError, FlowWriter, tvl1_flow, write_flow_frames
from i3d.video.inputs import InputStream, compute_flow, load_input, open_input, source_name
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
    "InputStream",
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
