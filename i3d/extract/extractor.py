"""The extractor: one input's features for each stream, through the engine
(:func:`i3d.chunked.chunked_outputs` in ``full`` mode,
:func:`i3d.chunked.run_clips` in ``clips`` and ``frames`` modes).

Crops are a batch dimension: every chunk arrives as ``(crops, C, t, S, S)``
from one decode, the network runs them together, and rows come out
``(t', crops, C)`` (``(t', C)`` for one crop). A combined output (``--stream
both --combine concat``) runs both streams over the same frames and joins
their rows along the channels, RGB first."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from typing import Literal, TypeVar

import numpy as np
import torch

from i3d import weights as W
from i3d.choices import DEFAULT_BACKEND, Backend
from i3d.chunked import (
    DEFAULT_CHUNK_FRAMES,
    LOGITS,
    OUTPUTS,
    POOLED,
    chunked_outputs,
    output_geometry,
    output_length,
    run_clips,
)
from i3d.extract.choices import COMBINE, CONCAT, DEFAULT_BATCH, DEFAULT_CLIP_LEN, LAYERS, MODES, STREAMS
from i3d.extract.writers import Features
from i3d.model import InceptionI3d
from i3d.network import LoadedNetwork, load_network
from i3d.runtime import Placement, Precision
from i3d.version import __version__
from i3d.video import Preprocess, open_input
from i3d.video.flow import DEFAULT_FLOW_ENGINE, check_flow_engine
from i3d.video.listing import check_source
from i3d.video.transforms import CROP_COUNTS, CropView
from i3d.video.windows import centred_windows, gather_windows, spaced_windows, stepped_windows

__all__ = [
    "Extractor",
    "LAYERS",
    "STREAMS",
    "MODES",
    "COMBINE",
    "CONCAT",
    "DEFAULT_CLIP_LEN",
    "DEFAULT_BATCH",
    "Mode",
]

Mode = Literal["full", "clips", "frames"]

_T = TypeVar("_T")


class Extractor:
    """Extract I3D features from one input at a time.

    Args:
        streams: ``("rgb",)``, ``("flow",)`` or both.
        weights, flow_weights: registry names or checkpoint paths.
        layer: ``"pooled"`` (Mixed_5c after the head's average pool, 1024-d),
            ``"logits"`` or a trunk endpoint such as ``"Mixed_4f"``.
        mode: ``"full"``, ``"clips"`` or ``"frames"`` (see :mod:`i3d.extract`).
        clip_len: window in frames, for ``clips`` and ``frames``.
        step: hop in frames between ``clips`` windows (default ``clip_len``).
        num_clips: instead of ``step``, this many ``clips`` windows evenly
            spaced (:func:`i3d.video.windows.spaced_starts`).
        crops: views of every frame, 1, 3, 5 or 10
            (:func:`i3d.video.transforms.crop_views`); rows become
            ``(crops, C)`` when more than one.
        combine: ``"separate"`` (one output per stream) or ``"concat"``
            (both streams in one output :data:`CONCAT`, RGB channels first).
        chunk_frames: frames per network call in ``full`` mode, all crops together
            (``chunk_frames // crops`` frames of each; any value >= 1 gives the same
            result; it bounds memory).
        batch: clips (a window of one crop) per network call in ``clips``
            and ``frames`` modes.
        device: torch device (default: ``cuda:$LOCAL_RANK`` or CUDA if
            available, else CPU).
        precision: ``fp32`` (exact, default), ``tf32``, ``bf16`` or ``fp16``
            (see :mod:`i3d.runtime`).
        backend: ``"torch"`` (default) or ``"openvino"`` (CPU, fp32 or
            bf16; :mod:`i3d.openvino`).
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
        num_clips: int | None = None,
        crops: int = 1,
        combine: str = "separate",
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        batch: int = DEFAULT_BATCH,
        device: str | torch.device | None = None,
        precision: Precision = "fp32",
        backend: Backend = DEFAULT_BACKEND,
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
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if crops not in CROP_COUNTS:
            raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        if combine == "concat" and tuple(streams) != STREAMS:
            raise ValueError("combine concat needs both streams, rgb and flow")
        if num_clips is not None and (mode != "clips" or step is not None):
            raise ValueError("num_clips is for clips mode, instead of step")
        step = clip_len if step is None else step
        for name, value in (
            ("clip_len", clip_len),
            ("step", step),
            ("num_clips", 1 if num_clips is None else num_clips),
            ("chunk_frames", chunk_frames),
            ("batch", batch),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.layer, self.mode, self.crops, self.combine = layer, mode, crops, combine
        self.clip_len, self.step, self.num_clips, self.batch = clip_len, step, num_clips, batch
        self.chunk_frames = chunk_frames
        self.placement = Placement.resolve(device, precision, backend)
        self.device, self.precision = self.placement.device, self.placement.precision
        self.flow_dir = flow_dir
        self.flow_engine = check_flow_engine(flow_engine)
        self.nets = {
            s: load_network(
                weights if s == "rgb" else flow_weights,
                self.placement,
                in_channels=3 if s == "rgb" else 2,
                preprocess=(transforms or {}).get(s),
                fps=fps,
                short_side=short_side,
                crop=crop,
                progress=progress,
            )
            for s in streams
        }
        if combine == "concat" and layer == LOGITS and len({n.model.num_classes for n in self.nets.values()}) != 1:
            raise ValueError("combine concat of logits needs RGB and flow weights of as many classes")

    @property
    def streams(self) -> list[str]:
        return list(self.nets)

    @property
    def outputs(self) -> list[str]:
        """The outputs of every input: its streams, or :data:`CONCAT` alone."""
        return [CONCAT] if self.combine == "concat" else self.streams

    def parts(self, output: str) -> list[str]:
        """The streams an output is made of, in channel order."""
        if output == CONCAT and self.combine == "concat":
            return self.streams
        self._net(output)  # an unknown stream is a ValueError
        return [output]

    @property
    def decode_chunk(self) -> int:
        """Frames decoded (and in ``full`` mode run) at a time: ``chunk_frames``
        frames of all crops together, so memory does not grow with crops."""
        return max(1, self.chunk_frames // self.crops)

    def _net(self, stream: str) -> LoadedNetwork:
        if stream in self.nets:
            return self.nets[stream]
        raise ValueError(f"this extractor runs {self.streams}, not {stream!r}")

    def preprocess(self, stream: str) -> Preprocess:
        return self._net(stream).preprocess

    def extract(self, path: str | os.PathLike[str]) -> dict[str, Features]:
        """All outputs' features of one input, in memory."""
        out = {}
        check_source(path)
        for output in self.outputs:
            parts = []
            for stream in self.parts(output):
                source = open_input(
                    path,
                    self.preprocess(stream),
                    flow_dir=self.flow_dir,
                    flow_engine=self.flow_engine,
                    crops=self.crops,
                )
                parts.append(
                    np.concatenate(list(self.rows(stream, source.num_frames, source.chunks(self.decode_chunk))))
                )
            if len({len(p) for p in parts}) != 1:
                raise ValueError(f"{path}: the streams gave {' and '.join(str(len(p)) for p in parts)} rows")
            data = np.concatenate(parts, axis=self._channel_axis)
            meta = self.describe(output, path, source.num_frames, source.fps, data.shape, source.views)
            out[output] = Features(data, *meta)
        return out

    @property
    def _channel_axis(self) -> int:
        """Channels of a row block ``(t, [crops,] C, ...)``."""
        return 1 if self.crops == 1 else 2

    def describe(
        self,
        output: str,
        path: str | os.PathLike[str],
        frames: int,
        fps: float | None,
        shape: tuple[int, ...],
        views: Sequence[CropView] = (),
    ) -> tuple[np.ndarray, dict]:
        """Row times and the sidecar metadata of an output; ``views``, the
        input's crops, are recorded with their positions."""
        spans = self.row_spans(output, frames).astype(np.float64)
        times = spans / fps if fps else spans
        meta = {
            "video": str(path),
            "stream": output,
            "shape": list(shape),
            "frames": frames,
            "fps": fps,
            "times": "seconds" if fps else "frames",
            "row_spans": times.tolist(),
            "weights": " + ".join(self._net(s).weights for s in self.parts(output)),
            **self.settings(output),
            **self.provenance(),
        }
        if self.crops > 1:
            meta["crop_views"] = [asdict(v) for v in views]  # name, top, left, flip; in the order of axis 1
        if output == CONCAT:
            width = shape[self._channel_axis] // 2
            # Which channels of a row hold which stream: [start, stop).
            meta["halves"] = {s: [k * width, (k + 1) * width] for k, s in enumerate(self.parts(output))}
        return times, meta

    def settings(self, output: str) -> dict:
        """What an output depends on besides its video: a complete output
        made with other settings is never silently reused."""
        nets = {s: self._net(s) for s in self.parts(output)}
        common = {
            "layer": self.layer,
            "mode": self.mode,
            "window": self._window(),
            "stride": self._stride(output),
            "num_clips": self.num_clips,
            "crops": self.crops,
            # Far beyond rounding (bf16: ~1e-2 relative): unlike the backend and device (provenance()).
            "precision": self.precision,
            # The TV-L1 engine changes the flow, and so the features.
            **({"flow_engine": self.flow_engine} if "flow" in self.parts(output) else {}),
        }
        if output != CONCAT:
            (net,) = nets.values()
            return {**common, "weights_sha256": net.sha256, "preprocess": asdict(net.preprocess)}
        # Each half's weights and preprocessing, in channel order.
        parts = [{"stream": s, "weights_sha256": n.sha256, "preprocess": asdict(n.preprocess)} for s, n in nets.items()]
        return {**common, "parts": parts}

    def provenance(self) -> dict:
        """How the features were computed, beyond :meth:`settings`: recorded
        for their reader, never compared when a run resumes.

        The backend and the device change the features only within the
        rounding of the precision they run in (each sums in its own order;
        in fp32, tests/tolerances.py's NETWORK_RTOL, ~2e-4 relative, bounds
        it), so an output made on a GPU, or by OpenVINO, is kept by a run
        resumed on the CPU in torch: refusing it would throw away work over
        a difference below the features' own precision. The precision, which
        changes them far beyond fp32 rounding (bf16: ~1e-2 relative), is a
        setting instead: an output of another one is never reused. The
        device is its type (``cpu``, ``cuda``): an index says nothing of the
        numbers. ``backend`` is the one asked for: openvino runs whole
        inputs, longer ones run in torch (:mod:`i3d.openvino`).
        """
        meta = {
            "backend": self.placement.backend,
            "device": self.device.type,
            "i3d_version": __version__,
            "torch_version": torch.__version__,
        }
        if self.placement.backend == "openvino":
            import openvino  # installed: Placement checked it

            meta["openvino_version"] = openvino.__version__
        return meta

    def _window(self) -> int | None:
        """Input frames of a row's window in ``clips`` and ``frames`` modes (``None``: ``full``)."""
        if self.mode != "full":
            return self.clip_len
        return output_geometry(self._net(self.streams[0]).model, self.layer).window

    def _stride(self, output: str) -> int | None:
        """Frames between rows (``None``: ``num_clips`` spacing, which depends on the video)."""
        if self.mode == "frames":
            return 1
        if self.mode == "clips":
            return None if self.num_clips is not None else self.step
        return output_geometry(self._net(self.parts(output)[0]).model, self.layer).stride

    def windows(self, frames: int) -> Iterator[np.ndarray]:
        """The frames of each row's window in ``clips`` and ``frames`` modes
        (:mod:`i3d.video.windows`)."""
        if self.mode == "frames":
            return centred_windows(frames, self.clip_len)
        if self.num_clips is not None:
            return spaced_windows(frames, self.clip_len, self.num_clips)
        return stepped_windows(frames, self.clip_len, self.step)

    def row_spans(self, output: str, frames: int) -> np.ndarray:
        """``(rows, 2)``: the ``[start, end)`` input frames each row covers."""
        if self.mode != "full":
            return np.array([[w.min(), w.max() + 1] for w in self.windows(frames)], dtype=np.int64).reshape(-1, 2)
        stride, window = self._stride(output), self._window()
        assert stride is not None and window is not None
        starts = np.arange(self.num_rows(output, frames)) * stride
        return np.stack([starts, np.minimum(starts + window, frames)], axis=1)

    def num_rows(self, output: str, frames: int) -> int:
        """Rows of the output for an input of ``frames`` frames."""
        if self.mode == "full":
            return output_length(self._net(self.parts(output)[0]).model, frames, self.layer)
        if self.mode == "frames":
            return frames
        if self.num_clips is not None:
            return self.num_clips
        return 1 if frames < self.clip_len else (frames - self.clip_len) // self.step + 1

    def rows(self, stream: str, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Feature rows ``(t, [crops,] C, ...)``, in order, of one stream for
        the frame chunks ``(C, t, H, W)`` (``(crops, C, t, H, W)``) of an
        input of ``frames`` frames."""
        net = self._net(stream)
        if self.mode == "full":
            yield from self._full(net.model, frames, chunks)
        else:
            yield from self._clips(net.model, frames, chunks)

    def output_rows(self, output: str, frames: int, chunks: Iterable[tuple[int, torch.Tensor]]) -> Iterator[np.ndarray]:
        """Rows of ``output`` from chunks tagged with the index of their part
        in :meth:`parts` (one part's chunks in order; parts interleaved in any
        way). A combined output's rows are its parts' rows side by side,
        each part's row blocks held only until the other part's catch up."""
        parts = self.parts(output)
        if len(parts) == 1:
            yield from self.rows(parts[0], frames, (chunk for _, chunk in chunks))
            return
        inputs = _demux(iter(chunks), len(parts))
        rows = [self.rows(stream, frames, part) for stream, part in zip(parts, inputs)]
        yield from _zip_rows(rows, self._channel_axis)

    def _to_rows(self, y: torch.Tensor) -> np.ndarray:
        """Network output ``(crops, C, t, ...)`` -> rows ``(t, [crops,] C, ...)``."""
        if self.layer == POOLED:
            y = y.mean(dim=(3, 4))  # (crops, 1024, t): one vector per step
        y = y.movedim(2, 0)  # (t, crops, C, ...)
        return (y[:, 0] if self.crops == 1 else y).float().cpu().numpy()

    def _full(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        for y in chunked_outputs(model, chunks, frames, self.layer, **self.placement.engine_options):
            yield self._to_rows(y)

    def _clips(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        windows = gather_windows(chunks, self.windows(frames), frames)  # (C, L, S, S) or (crops, C, L, S, S) each
        clips = (clip for w in windows for clip in (w.unbind(0) if self.crops > 1 else (w,)))
        batches = (torch.stack(b) for b in _batched(clips, self.batch))  # (B, C, L, S, S)
        pending: list[torch.Tensor] = []  # clips' vectors until whole rows (all crops of a window) are done
        for y in run_clips(model, batches, self.layer, **self.placement.engine_options):
            # Each clip's output averaged over time (and space for pooled and logits).
            y = y.flatten(2).mean(dim=2) if self.layer in OUTPUTS else y.mean(dim=2)
            pending.append(y.float().cpu())
            done = torch.cat(pending)
            whole = len(done) - len(done) % self.crops
            if whole:
                rows = done[:whole]
                yield (rows.unflatten(0, (-1, self.crops)) if self.crops > 1 else rows).numpy()
            pending = [done[whole:]]


def _batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _demux(tagged: Iterator[tuple[int, _T]], parts: int) -> list[Iterator[_T]]:
    """Split one stream of ``(part, item)`` into an iterator per part; items
    of the other parts read on the way are queued for them."""
    queues: list[deque[_T]] = [deque() for _ in range(parts)]

    def part(k: int) -> Iterator[_T]:
        while True:
            while queues[k]:
                yield queues[k].popleft()
            item = next(tagged, None)
            if item is None:
                return
            queues[item[0]].append(item[1])

    return [part(k) for k in range(parts)]


def _zip_rows(parts: list[Iterator[np.ndarray]], axis: int) -> Iterator[np.ndarray]:
    """Row blocks of several parts joined along ``axis`` as soon as all parts
    have the rows; the part with fewest rows pending is read next.

    Raises:
        ValueError: the parts end with different numbers of rows.
    """
    pending: list[np.ndarray | None] = [None] * len(parts)
    ended = [False] * len(parts)
    while not all(ended):
        counts = [0 if p is None else len(p) for p in pending]
        k = min((c, k) for k, c in enumerate(counts) if not ended[k])[1]
        block = next(parts[k], None)
        if block is None:
            ended[k] = True
            continue
        previous = pending[k]
        pending[k] = block if previous is None else np.concatenate([previous, block])
        ready = min(0 if p is None else len(p) for p in pending)
        if ready:
            yield np.concatenate([p[:ready] for p in pending if p is not None], axis=axis)
            pending = [p[ready:] for p in pending if p is not None]
    if any(p is not None and len(p) for p in pending):
        left = [0 if p is None else len(p) for p in pending]
        raise ValueError(f"the streams gave different numbers of rows ({left} left over)")
