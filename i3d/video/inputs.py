"""Network input from a video file, a frame folder or an array: :func:`open_input`.

:func:`open_input` opens a source for a checkpoint's :class:`Preprocess`
preset and returns an :class:`NetworkInput`, which knows its exact frame count
up front and yields network-ready ``(C, t, crop, crop)`` float32 chunks:

* RGB: frames resampled to ``preprocess.fps``, short side resized to
  ``resize_short_side`` (bilinear, as decoded), centre crop (random crop,
  flip and scale jitter with ``train=True``), values ``2 * x / 255 - 1``.
* flow: from a flow frame folder, from a flow cache, or computed on the fly
  with TV-L1 (:mod:`i3d.video.flow`) on the resampled, resized, grayscale
  frames of a video or RGB frame folder; clipped to ``+-flow_clip`` and
  divided by it.
* ``.npy`` in DeepMind's sample layout: returned as is.

Training augmentation is drawn once per :func:`open_input` call, so every
chunk of a clip gets the same crop, flip and scale. At test time ``crops``
views of every frame (:func:`i3d.video.transforms.crop_views`) come from one
decode as a leading batch dimension of every chunk.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from i3d.atomic import check_replaceable
from i3d.errors import VideoError
from i3d.progress import Progress
from i3d.video.flow import (
    DEFAULT_FLOW_ENGINE,
    MIN_FLOW_FRAMES,
    NPY_DTYPE,
    FlowEngine,
    FlowFormat,
    FlowWorkerError,
    FlowWriter,
    flow_output_path,
    to_gray,
    write_flow_frames,
)
from i3d.video.flow_cache import (
    CACHE_FORMAT,
    FlowCacheEntry,
    find_cache,
    flow_cache_key,
    flow_record_path,
    flow_source_record,
    open_cache,
    write_flow_record,
)
from i3d.video.listing import source_name
from i3d.video.presets import Preprocess
from i3d.video.readers import (
    CHARADES_FPS,
    FlowArrayReader,
    FrameFolderReader,
    NpyReader,
    VideoReader,
    check_chunk_size,
    check_start,
)
from i3d.video.transforms import (
    CROP_COUNTS,
    FLIP_PROBABILITY,
    CropView,
    crop,
    crop_views,
    horizontal_flip,
    normalize,
    random_crop_offsets,
    random_short_side,
    resize_flow_field,
    resized_size,
)

# Frames decoded per step when feeding TV-L1; small, as flow dominates the cost.
FLOW_READ_CHUNK = 16
# Frames per chunk when load_input assembles a whole clip.
LOAD_CHUNK = 64

# How an NetworkInput turns its reader's frames into network input.
_Mode = Literal["rgb", "flow", "compute_flow", "normalized"]


@dataclass(frozen=True)
class _Geometry:
    """Where delivered frames are resized to and cropped; drawn once per stream."""

    short_side: int  # scale jitter included
    size: tuple[int, int]  # (H, W) after resizing
    views: tuple[CropView, ...]  # one per crop of the output, in order


class NetworkInput:
    """A source opened as network input; see :func:`open_input`.

    Attributes:
        path: the source.
        preprocess: the preset it is prepared for.
        fps: the rate frames are delivered at (after resampling); ``None``
            for arrays, which carry no rate.
        num_frames: the exact number of frames :meth:`chunks` yields in total,
            known before iterating.
        frame_size: ``(H, W)`` of the frames before cropping.
        views: the crops of each frame (:func:`i3d.video.transforms.crop_views`);
            empty for ``.npy`` arrays, which are used as stored.
    """

    def __init__(
        self,
        path: str,
        preprocess: Preprocess,
        *,
        mode: _Mode,
        reader: VideoReader | FrameFolderReader | FlowArrayReader | NpyReader,
        geometry: _Geometry | None,
        flow_engine: FlowEngine | str | None = None,
        cache: FlowCacheEntry | None = None,
    ) -> None:
        self.path = path
        self.preprocess = preprocess
        self.fps: float | None = reader.fps
        self.num_frames: int = reader.num_frames
        self.frame_size: tuple[int, int] = tuple(geometry.size if geometry else reader.frame_size)
        self.views: tuple[CropView, ...] = geometry.views if geometry else ()
        self._mode = mode
        self._reader = reader
        self._geometry = geometry
        self._flow_engine = flow_engine
        self._cache = cache
        self._crops = len(self.views) if len(self.views) > 1 else 1

    @property
    def flipped(self) -> bool:
        """Whether the frames are mirrored left to right (a training draw)."""
        return self._geometry is not None and any(view.flip for view in self._geometry.views)

    def __repr__(self) -> str:
        return (
            f"NetworkInput({self.path!r}, modality={self.preprocess.modality!r}, fps={self.fps}, "
            f"num_frames={self.num_frames}, frame_size={self.frame_size})"
        )

    def chunks(self, size: int, start: int = 0) -> Iterator[torch.Tensor]:
        """Network input, ``size`` frames at a time, from frame ``start`` on.

        Yields:
            Consecutive float32 tensors ``(C, t, crop, crop)`` with
            ``t <= size`` (``(views, C, t, crop, crop)`` when opened with
            ``crops > 1``; ``(C, t, H, W)`` as stored for ``.npy``), covering
            frames ``start .. num_frames - 1`` in order. Memory is bounded by
            ``size``, not by the video's length. Frames before ``start`` are
            not converted (frame files not even read), so a clip from the
            middle of a long video costs little more than the clip.

        Raises:
            VideoError: a stream turns out to be corrupt while decoding.
        """
        check_chunk_size(size)
        check_start(start, self.num_frames)
        if self._mode == "normalized":
            for chunk in self._reader.chunks(size, start):
                yield torch.from_numpy(chunk.frames).permute(3, 0, 1, 2).contiguous()
        elif self._mode == "compute_flow":
            yield from self._computed_flow(size, start)
        else:
            for chunk in self._reader.chunks(size, start):
                yield self._network_input(chunk.frames)

    def _network_input(self, frames: np.ndarray) -> torch.Tensor:
        """``(t, H, W, C)`` frames (uint8 RGB or flow in pixels) to ``(C, t, crop, crop)``,
        or ``(views, C, t, crop, crop)`` for several crops."""
        geometry = self._geometry
        assert geometry is not None
        flow = self.preprocess.modality == "flow"
        if flow and frames.shape[1:3] != geometry.size:
            frames = np.stack([resize_flow_field(field, geometry.size) for field in frames])
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)
        views = []
        for view in geometry.views:
            # Gather the crop channel-first before converting: float ops on contiguous data are ~3x faster.
            clip = normalize(crop(video, view.top, view.left, self.preprocess.crop).contiguous(), self.preprocess)
            views.append(horizontal_flip(clip, flow=flow).contiguous() if view.flip else clip)
        return views[0] if self._crops == 1 else torch.stack(views)  # (C, t, S, S) or (N, C, t, S, S)

    def _computed_flow(self, size: int, start: int) -> Iterator[torch.Tensor]:
        # Field t needs frames t and t + 1 (the last field repeats the one
        # before), so fields from `start` on come from frames `start` on;
        # one frame earlier where only one is left, its field dropped.
        first = min(start, self.num_frames - MIN_FLOW_FRAMES)
        own_engine = not isinstance(self._flow_engine, FlowEngine)
        engine = _flow_engine(self._flow_engine)
        writer = None
        if self._cache is not None and start == 0:  # only a whole pass fills the cache
            self._cache.forget()  # from here until the new record, the entry is not valid
            writer = FlowWriter(self._cache.folder, self._cache.name, format=CACHE_FORMAT, num_frames=self.num_frames)
        fields = engine.fields(_gray_frames(self._reader, first))
        try:
            for _ in range(start - first):
                next(fields)
            remaining = self.num_frames - start
            while remaining:
                # This chunk's fields and no more, none held back: a consumer
                # that stops after it has asked TV-L1 for nothing it does not get.
                batch = []
                for field in itertools.islice(fields, min(size, remaining)):
                    # Round as the cache stores it, so that cached and fresh input agree.
                    field = field.astype(NPY_DTYPE).astype(np.float32)
                    if writer is not None:
                        writer.add(field)
                    batch.append(field)
                remaining -= len(batch)
                if writer is not None and not remaining:
                    # Before the last chunk goes out: a consumer may stop as soon as it has it.
                    writer.commit()
                    assert self._cache is not None
                    self._cache.record_source()
                yield self._network_input(np.stack(batch))
        except FlowWorkerError as err:
            raise VideoError(self.path, str(err)) from None
        finally:
            fields.close()  # cancels the pairs still queued on a shared pool
            if writer is not None:
                writer.abort()
            if own_engine:
                engine.close()


def _open_source(
    path: str, fps: float | Fraction | None, short_side: int, source_fps: float | Fraction
) -> VideoReader | FrameFolderReader:
    """A frame folder (RGB or flow) or a video file, resampled to ``fps`` and resized to ``short_side``."""
    if os.path.isdir(path):
        return FrameFolderReader(path, fps, source_fps=source_fps, short_side=short_side)
    return VideoReader(path, fps, short_side=short_side)


def _check_flow_frames(path: str, source: VideoReader | FrameFolderReader) -> None:
    if source.num_frames < MIN_FLOW_FRAMES:
        raise VideoError(
            path, f"flow needs at least {MIN_FLOW_FRAMES} frames, got {source.num_frames} at {source.fps:g} fps"
        )


def _gray_frames(source: VideoReader | FrameFolderReader, start: int = 0) -> Iterator[np.ndarray]:
    """The grayscale frames TV-L1 runs on, from frame ``start`` on."""
    for chunk in source.chunks(FLOW_READ_CHUNK, start):
        for frame in chunk.frames:
            yield to_gray(frame)


def _geometry(
    source_size: tuple[int, int],
    preprocess: Preprocess,
    train: bool,
    generator: torch.Generator | None,
    hflip: bool = True,
    crops: int = 1,
) -> _Geometry:
    short_side = random_short_side(preprocess.resize_short_side, generator) if train else preprocess.resize_short_side
    size = resized_size(*source_size, short_side)
    if train:
        top, left = random_crop_offsets(*size, preprocess.crop, generator)
        # Drawn even when flips are off: the other draws of a seed stay the same.
        flip = bool(torch.rand((), generator=generator) < FLIP_PROBABILITY) and hflip
        return _Geometry(short_side, size, (CropView("random", top, left, flip),))
    return _Geometry(short_side, size, crop_views(*size, preprocess.crop, crops))


def open_input(
    path: str | os.PathLike[str],
    preprocess: Preprocess,
    *,
    train: bool = False,
    flow_dir: str | os.PathLike[str] | None = None,
    generator: torch.Generator | None = None,
    flow_engine: FlowEngine | str | None = None,
    source_fps: float | Fraction = CHARADES_FPS,
    hflip: bool = True,
    crops: int = 1,
) -> NetworkInput:
    """Open a video, frame folder or ``.npy`` as network input for ``preprocess``.

    Args:
        path: a video file (anything FFmpeg decodes), a Charades-style frame
            folder (RGB or flow layout), or a ``.npy`` ``(1, T, H, W, C)`` in
            ``[-1, 1]`` (returned as is: no resampling, resizing, cropping or
            augmentation).
        preprocess: the checkpoint's preset (modality, fps, sizes).
        train: random crop, horizontal flip and scale jitter (drawn once for
            the whole clip) instead of the centre crop.
        flow_dir: flow cache for flow computed from a video or RGB folder.
            An entry is ``flow_dir/KEY.npy`` (:func:`flow_cache_key`: keyed
            by the absolute path) with its source record ``KEY.npy.json``
            (:func:`flow_source_record`), or an ``i3d flow --out`` output
            ``NAME.npy`` / ``NAME/`` with a matching record. It is used only
            while the record matches the source (path, size, modification
            time, fps, size); otherwise the flow is computed and written as
            ``KEY.npy`` once a full pass over :meth:`NetworkInput.chunks`
            completes.
        generator: randomness for ``train``.
        flow_engine: the TV-L1 engine to use (shared between inputs), or the
            name of one (:data:`~i3d.video.flow.FLOW_ENGINES`) that each
            :meth:`NetworkInput.chunks` call starts and stops; default the
            torch engine. Cached flow is used only if this engine made it.
        source_fps: frame rate of frame folders (Charades: 24).
        hflip: with ``train``, mirror the clip with probability 1/2
            (:attr:`NetworkInput.flipped` says whether it was); ``False`` for
            direction-sensitive classes.
        crops: test-time views of every frame, 1, 3, 5 or 10
            (:func:`i3d.video.transforms.crop_views`), delivered as a leading
            batch dimension of every chunk when more than one.

    Raises:
        VideoError: the source is unusable (see :mod:`i3d.video.readers`), a
            flow folder is given for RGB, flow is asked of fewer than two
            frames, or a flow cache does not match the video.
    """
    path = os.fspath(path)
    if preprocess.resize_short_side < preprocess.crop:
        raise ValueError(f"resize_short_side {preprocess.resize_short_side} is smaller than crop {preprocess.crop}")
    is_flow = preprocess.modality == "flow"
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
    if train and crops != 1:
        raise ValueError("training clips take one random crop; crops must be 1")
    if not os.path.isdir(path) and path.lower().endswith(".npy"):
        if crops != 1:
            raise VideoError(path, "a .npy array is network input as stored and cannot be cropped into views")
        array = NpyReader(path, channels=preprocess.channels)
        return NetworkInput(path, preprocess, mode="normalized", reader=array, geometry=None)

    source = _open_source(path, preprocess.fps, preprocess.resize_short_side, source_fps)
    geometry = _geometry(source.source_size, preprocess, train, generator, hflip, crops)
    if source.kind == "flow" and not is_flow:
        raise VideoError(path, "holds flow frames, but the preset is for RGB input")
    if source.kind == "flow" or not is_flow:
        # Stored frames are resized once, straight to the (jittered) size.
        source.short_side = geometry.short_side
        return NetworkInput(path, preprocess, mode=source.kind, reader=source, geometry=geometry)

    # Flow from RGB frames: TV-L1 on frames at resize_short_side; scale jitter
    # then resizes the fields.
    _check_flow_frames(path, source)
    cache = None
    if flow_dir is not None:
        record = flow_source_record(
            path, source.fps, preprocess.resize_short_side, source.num_frames, _engine_name(flow_engine)
        )
        cached = find_cache(Path(flow_dir), path, record)
        if cached is not None:
            try:
                stored = open_cache(cached, source)
            except VideoError:
                pass  # damaged since its record was written: recomputed below, never reused
            else:
                return NetworkInput(path, preprocess, mode="flow", reader=stored, geometry=geometry)
        cache = FlowCacheEntry(Path(flow_dir), flow_cache_key(path), record)
    return NetworkInput(
        path, preprocess, mode="compute_flow", reader=source, geometry=geometry, flow_engine=flow_engine, cache=cache
    )


def _engine_name(engine: FlowEngine | str | None) -> str:
    return engine.engine if isinstance(engine, FlowEngine) else engine or DEFAULT_FLOW_ENGINE


def _flow_engine(engine: FlowEngine | str | None) -> FlowEngine:
    """``engine`` itself, or a new engine of that name (every core)."""
    return engine if isinstance(engine, FlowEngine) else FlowEngine(engine=_engine_name(engine))


def _counted(fields: Iterator[np.ndarray], progress: Progress) -> Iterator[np.ndarray]:
    for field in fields:
        yield field
        progress.advance(1)


def load_input(
    path: str | os.PathLike[str],
    preprocess: Preprocess,
    *,
    train: bool = False,
    flow_dir: str | os.PathLike[str] | None = None,
    generator: torch.Generator | None = None,
    flow_engine: FlowEngine | str | None = None,
    source_fps: float | Fraction = CHARADES_FPS,
) -> torch.Tensor:
    """The whole input at once, for short clips (the memory grows with the clip).

    Args:
        path, preprocess, train, flow_dir, generator, flow_engine, source_fps:
            as for :func:`open_input`.

    Returns:
        ``(C, T, crop, crop)`` float32 (``(C, T, H, W)`` for ``.npy``), ``T`` =
        :attr:`NetworkInput.num_frames`.
    """
    stream = open_input(
        path,
        preprocess,
        train=train,
        flow_dir=flow_dir,
        generator=generator,
        flow_engine=flow_engine,
        source_fps=source_fps,
    )
    out: torch.Tensor | None = None
    position = 0
    for chunk in stream.chunks(LOAD_CHUNK):
        if out is None:
            out = torch.empty((chunk.shape[0], stream.num_frames, *chunk.shape[2:]), dtype=chunk.dtype)
        out[:, position : position + chunk.shape[1]] = chunk
        position += chunk.shape[1]
    assert out is not None and position == stream.num_frames
    return out


def compute_flow(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    fps: float | Fraction | None = 25.0,
    short_side: int = 256,
    format: FlowFormat = "jpg",
    engine: FlowEngine | str | None = None,
    source_fps: float | Fraction = CHARADES_FPS,
    name: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Compute TV-L1 flow for a video (or RGB frame folder) and write it under ``out_dir``.

    The frames are resampled to ``fps``, resized to ``short_side``, made
    grayscale; the output is ``out_dir/NAME/`` (jpg) or ``out_dir/NAME.npy``
    (see :mod:`i3d.video.flow`), NAME being ``name`` or :func:`source_name`,
    with a record of its source (``NAME.json`` or ``NAME.npy.json``: path,
    size, modification time, ``fps``, ``short_side``, engine). It serves as
    ``flow_dir`` cache to :func:`open_input` for that source (with a preset
    of the same ``fps`` and ``resize_short_side``) while the record matches.

    Args:
        name: the output's name (default :func:`source_name`).
        engine: the TV-L1 engine (shared between videos), or the name of one
            to start and stop for this video; default the torch engine.
        progress: where fields done are reported.

    Returns:
        The output path.

    Raises:
        VideoError: the source is unusable or has fewer than two frames, or
            TV-L1 failed on it (a worker process died; ``engine`` goes on
            with a fresh pool for the next video).
        OutputError: the output or its record is a device node, FIFO,
            socket or link (checked before any work; never replaced).
    """
    path = os.fspath(path)
    target = flow_output_path(out_dir, name or source_name(path), format)
    check_replaceable(target, folder=format == "jpg")  # before any work
    check_replaceable(flow_record_path(target))
    source = _open_source(path, fps, short_side, source_fps)
    if source.kind == "flow":
        raise VideoError(path, "holds flow frames already")
    _check_flow_frames(path, source)
    own_engine = not isinstance(engine, FlowEngine)
    engine = _flow_engine(engine)
    try:
        with contextlib.closing(engine.fields(_gray_frames(source))) as fields:
            if progress is not None:
                progress.start(path, source.num_frames)
                fields = _counted(fields, progress)
            entry = write_flow_frames(
                fields, out_dir, name or source_name(path), format=format, num_frames=source.num_frames
            )
    except FlowWorkerError as err:
        raise VideoError(path, str(err)) from None
    finally:
        if own_engine:
            engine.close()
    write_flow_record(entry, flow_source_record(path, source.fps, short_side, source.num_frames, engine.engine))
    return entry
