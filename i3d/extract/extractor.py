"""The extractor: one input's features for each stream, through the engine
(:func:`i3d.streaming.stream_outputs` in ``full`` mode,
:func:`i3d.streaming.run_clips` in ``clips`` mode)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from i3d import __version__
from i3d import weights as W
from i3d.extract.writers import Features
from i3d.model import ENDPOINTS, HEAD_POOL, InceptionI3d
from i3d.runtime import Precision, default_device, prepare
from i3d.streaming import DEFAULT_CHUNK_FRAMES, OUTPUTS, POOLED, output_length, run_clips, stream_outputs
from i3d.video import Preprocess, open_input
from i3d.video.flow import DEFAULT_FLOW_ENGINE, check_flow_engine
from i3d.video.listing import check_source
from i3d.video.presets import with_overrides

__all__ = ["Extractor", "LAYERS", "STREAMS", "DEFAULT_CLIP_LEN", "DEFAULT_BATCH", "Mode"]

Mode = Literal["full", "clips"]
LAYERS: tuple[str, ...] = OUTPUTS + tuple(e for e in ENDPOINTS if e.startswith(("Mixed", "Conv", "MaxPool")))
STREAMS = ("rgb", "flow")

# The common "stack" setting of other extractors: 64-frame windows, no overlap.
DEFAULT_CLIP_LEN = 64
DEFAULT_BATCH = 4  # windows per network call in clips mode


@dataclass
class _Net:
    stream: str
    model: InceptionI3d
    preprocess: Preprocess
    weights: str
    sha256: str


class Extractor:
    """Extract I3D features from one input at a time.

    Args:
        streams: ``("rgb",)``, ``("flow",)`` or both.
        weights, flow_weights: registry names or checkpoint paths.
        layer: ``"pooled"`` (Mixed_5c after the head's average pool, 1024-d),
            ``"logits"`` or a trunk endpoint such as ``"Mixed_4f"``.
        mode: ``"full"`` or ``"clips"`` (see the module docstring).
        clip_len, step: window and hop in frames, for ``clips``.
        chunk: frames per network call in ``full`` mode (any value >= 1
            gives the same result; it bounds memory).
        batch: windows per network call in ``clips`` mode.
        device: torch device (default: ``cuda:$LOCAL_RANK`` or CUDA if
            available, else CPU).
        precision: ``fp32`` (exact, default), ``tf32``, ``bf16`` or ``fp16``
            (see :mod:`i3d.runtime`).
        flow_dir: cache folder of flow frames, read and written.
        flow_engine: the TV-L1 engine for flow computed from videos,
            ``"torch"`` (default) or ``"opencv"`` (recorded in flow sidecars).
        transforms: preprocessing per stream (``{"rgb": preset}``) instead
            of the weights' own.
        fps, short_side, crop: override these fields of every stream's
            preprocessing (recorded in the sidecar's ``preprocess``, so an
            output made with other values is never reused).
    """

    def __init__(
        self,
        streams: Sequence[str] = ("rgb",),
        *,
        weights: str | os.PathLike[str] = W.DEFAULT_RGB,
        flow_weights: str | os.PathLike[str] = W.DEFAULT_FLOW,
        layer: str = POOLED,
        mode: Mode = "full",
        clip_len: int = DEFAULT_CLIP_LEN,
        step: int | None = None,
        chunk: int = DEFAULT_CHUNK_FRAMES,
        batch: int = DEFAULT_BATCH,
        device: str | torch.device | None = None,
        precision: Precision = "fp32",
        flow_dir: str | os.PathLike[str] | None = None,
        flow_engine: str = DEFAULT_FLOW_ENGINE,
        transforms: dict[str, Preprocess] | None = None,
        fps: float | None = None,
        short_side: int | None = None,
        crop: int | None = None,
        progress: bool = False,
    ) -> None:
        if not streams or any(s not in STREAMS for s in streams):
            raise ValueError(f"streams must be among {STREAMS}, got {streams}")
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        if mode not in ("full", "clips"):
            raise ValueError(f"mode must be full or clips, got {mode!r}")
        step = clip_len if step is None else step
        for name, value in (("clip_len", clip_len), ("step", step), ("chunk", chunk), ("batch", batch)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.layer, self.mode = layer, mode
        self.clip_len, self.step, self.chunk, self.batch = clip_len, step, chunk, batch
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self.flow_dir = flow_dir
        self.flow_engine = check_flow_engine(flow_engine)
        self.nets = [self._load(s, weights if s == "rgb" else flow_weights, progress) for s in streams]
        for net in self.nets:
            preprocess = (transforms or {}).get(net.stream, net.preprocess)
            net.preprocess = with_overrides(preprocess, fps=fps, short_side=short_side, crop=crop)

    def _load(self, stream: str, spec: str | os.PathLike[str], progress: bool) -> _Net:
        channels = 3 if stream == "rgb" else 2
        model, preprocess, entry, path = W.load_pretrained(spec, in_channels=channels, progress=progress)
        model = prepare(model, self.device, self.precision)  # type: ignore[assignment]
        return _Net(stream, model, preprocess, entry.name if entry else str(path), W.sha256(path))

    @property
    def streams(self) -> list[str]:
        return [n.stream for n in self.nets]

    def _net(self, stream: str) -> _Net:
        for net in self.nets:
            if net.stream == stream:
                return net
        raise ValueError(f"this extractor runs {self.streams}, not {stream!r}")

    def preprocess(self, stream: str) -> Preprocess:
        return self._net(stream).preprocess

    def extract(self, path: str | os.PathLike[str]) -> dict[str, Features]:
        """All streams' features of one input, in memory."""
        out = {}
        check_source(path)
        for net in self.nets:
            source = open_input(path, net.preprocess, flow_dir=self.flow_dir, flow_engine=self.flow_engine)
            data = np.concatenate(list(self.rows(net.stream, source.num_frames, source.chunks(self.chunk))))
            out[net.stream] = Features(
                data, *self.describe(net.stream, path, source.num_frames, source.fps, data.shape)
            )
        return out

    def describe(
        self, stream: str, path: str | os.PathLike[str], frames: int, fps: float | None, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, dict]:
        """Row times and the sidecar metadata of an output."""
        net = self._net(stream)
        stride, window = self._row_geometry(stream)
        starts = np.arange(shape[0]) * stride
        spans = np.stack([starts, np.minimum(starts + window, frames)], axis=1).astype(np.float64)
        times = spans / fps if fps else spans
        meta = {
            "video": str(path),
            "stream": stream,
            "shape": list(shape),
            "frames": frames,
            "fps": fps,
            "times": "seconds" if fps else "frames",
            "row_spans": times.tolist(),
            "weights": net.weights,
            **self.settings(stream),
            "i3d_version": __version__,
        }
        return times, meta

    def settings(self, stream: str) -> dict:
        """What an output depends on besides its video: a complete output
        made with other settings is never silently reused."""
        net = self._net(stream)
        stride, window = self._row_geometry(stream)
        flow = {"flow_engine": self.flow_engine} if stream == "flow" else {}
        return {
            "layer": self.layer,
            "mode": self.mode,
            "window": window,
            "stride": stride,
            "weights_sha256": net.sha256,
            "precision": self.precision,
            "preprocess": asdict(net.preprocess),
            **flow,
        }

    def _row_geometry(self, stream: str) -> tuple[int, int]:
        """``(stride, window)`` in input frames of the output rows."""
        if self.mode == "clips":
            return self.step, self.clip_len
        model = self._net(stream).model
        trunk = self.layer if self.layer not in OUTPUTS else model.trunk[-1]
        stride = model.temporal_stride(trunk)
        # The head averages HEAD_POOL[0] steps of Mixed_5c.
        return stride, stride * HEAD_POOL[0] if self.layer in OUTPUTS else stride

    def num_rows(self, stream: str, frames: int) -> int:
        """Rows of the output for an input of ``frames`` frames."""
        if self.mode == "full":
            return output_length(self._net(stream).model, frames, self.layer)
        return 1 if frames < self.clip_len else (frames - self.clip_len) // self.step + 1

    def rows(self, stream: str, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Feature rows, in order, for the frame chunks ``(C, t, H, W)`` of an
        input of ``frames`` frames."""
        net = self._net(stream)
        if self.mode == "full":
            yield from self._full(net.model, frames, chunks)
        else:
            yield from self._clips(net.model, frames, chunks)

    def _to_rows(self, y: torch.Tensor) -> np.ndarray:
        """Network output ``(B, C, t, ...)`` -> rows ``(B * t, C, ...)``."""
        if self.layer == POOLED:
            y = y.mean(dim=(3, 4))  # (B, 1024, t): one vector per step
        return y.movedim(2, 1).flatten(0, 1).float().cpu().numpy()

    def _full(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        for y in stream_outputs(model, chunks, frames, self.layer, device=self.device, precision=self.precision):
            yield self._to_rows(y)

    def _clips(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        for y in run_clips(
            model, self._windows(frames, chunks), self.layer, device=self.device, precision=self.precision
        ):
            # Each window's output averaged over time (and space for pooled and logits).
            yield (y.flatten(2).mean(dim=2) if self.layer in OUTPUTS else y.mean(dim=2)).float().cpu().numpy()

    def _windows(self, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Batches ``(B, C, L, H, W)`` of the windows of an input's chunks ``(C, t, H, W)``."""
        length = min(self.clip_len, frames)
        buffer: torch.Tensor | None = None  # frames [start, start + buffer.shape[1])
        start, next_window, pending = 0, 0, []
        received = 0
        for chunk in chunks:
            received += chunk.shape[1]
            buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=1)
            while next_window + length <= start + buffer.shape[1]:
                offset = next_window - start
                pending.append(buffer[:, offset : offset + length])
                next_window += self.step
                if len(pending) == self.batch:
                    yield torch.stack(pending)
                    pending = []
            drop = min(next_window - start, buffer.shape[1])
            buffer, start = buffer[:, drop:], start + drop
        if received != frames:
            raise ValueError(f"got {received} frames, expected {frames}")
        if pending:
            yield torch.stack(pending)
