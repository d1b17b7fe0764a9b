"""Names and defaults that the command-line flags offer, in a module that imports no torch.

The modules that use them (:mod:`i3d.model`, :mod:`i3d.chunked`,
:mod:`i3d.predict`, :mod:`i3d.video.transforms`, :mod:`i3d.video.flow`)
import them from here and export them as before; a parser built from this
module alone keeps ``i3d SUBCOMMAND --help`` free of torch and OpenCV.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ENDPOINTS",
    "DEFAULT_CHUNK_FRAMES",
    "POOLED",
    "LOGITS",
    "OUTPUTS",
    "AVERAGES",
    "DEFAULT_CLIP_LEN",
    "CROP_COUNTS",
    "FlowFormat",
    "FLOW_FORMATS",
    "FlowEngineName",
    "FLOW_ENGINES",
    "DEFAULT_FLOW_ENGINE",
    "Backend",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "OPENVINO_PRECISIONS",
]

# ---- the network (i3d.model) ----

# Endpoints in network order, with DeepMind's names, one stage of the stride-2 pyramid a line.
# fmt: off
ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c",
    "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
    "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
    "Logits", "Predictions",
)
# fmt: on

# ---- chunked inference (i3d.chunked) ----

# Frames run through the network at a time by the commands. Activations of a
# 224x224 clip take about 10 MB per frame in float32 inference, so 128
# frames stay near 1.5 GB whatever the input's length; results do not depend
# on it.
DEFAULT_CHUNK_FRAMES = 128

# What a stream can return besides any trunk endpoint of the model.
POOLED = "pooled"  # Mixed_5c after the head's average pool: (B, 1024, T', H', W')
LOGITS = "logits"  # per-time logits: (B, num_classes, T')
OUTPUTS = (POOLED, LOGITS)

# ---- multi-view classification (i3d.predict) ----

AVERAGES: tuple[str, ...] = ("score", "prob")
# Frames of each multi-view clip unless told otherwise: DeepMind's 64-frame training clips.
DEFAULT_CLIP_LEN = 64

# ---- transforms (i3d.video.transforms) ----

# Test-time multi-crop: how many views of a frame --crops may ask for.
CROP_COUNTS = (1, 3, 5, 10)

# ---- optical flow (i3d.video.flow) ----

FlowFormat = Literal["jpg", "npy"]
FLOW_FORMATS: tuple[FlowFormat, ...] = ("jpg", "npy")
FlowEngineName = Literal["torch", "opencv"]
FLOW_ENGINES: tuple[FlowEngineName, ...] = ("torch", "opencv")
DEFAULT_FLOW_ENGINE: FlowEngineName = "torch"

# ---- what runs the network (i3d.runtime.Placement) ----

Backend = Literal["torch", "openvino"]
BACKENDS: tuple[Backend, ...] = ("torch", "openvino")
# torch: OpenVINO is an optional extra, CPU only, and runs whole clips only
# (longer inputs are cut into chunks in torch; see i3d.openvino).
DEFAULT_BACKEND: Backend = "torch"
# The precisions OpenVINO's CPU plugin runs: its INFERENCE_PRECISION_HINT.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
