"""Video in: streaming readers, frame-rate resampling, transforms and TV-L1 flow."""

from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB, KINETICS_FLOW, KINETICS_RGB, Preprocess

__all__ = ["Preprocess", "KINETICS_RGB", "KINETICS_FLOW", "CHARADES_RGB", "CHARADES_FLOW"]
