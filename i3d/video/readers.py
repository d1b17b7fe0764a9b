"""Streaming frame readers: video files (PyAV), Charades frame folders, NumPy arrays.

Every reader knows, before decoding anything, exactly how many frames it
will deliver (``num_frames``) and at which rate (``fps``), and delivers them
as :class:`FrameChunk` s of at most ``size`` frames: memory is bounded by the
chunk size, never by the video's length. Frames are resampled to the
requested rate by timestamp with FFmpeg's ``fps`` rule
(:mod:`i3d.video.timing`), and resized as they are decoded when
``short_side`` is given (:func:`i3d.video.transforms.resize_frame`).

Readers raise :class:`~i3d.errors.VideoError`, with a one-line message
naming the file and the cause, for every kind of bad input: a missing or
empty file, a file FFmpeg cannot read, no video stream, a truncated or
corrupt stream, fewer than :data:`~i3d.video.timing.MIN_FRAMES` frame, a
frame folder with a gap in its numbering. Corruption that only decoding can
reveal is raised by the iteration, possibly after some chunks.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Generic, Literal, TypeVar

import av
import cv2
import numpy as np

from i3d.errors import VideoError
from i3d.video.flow import flow_from_jpeg_values
from i3d.video.listing import FRAME_SUFFIXES
from i3d.video.presets import CHARADES_FPS
from i3d.video.timing import MIN_FRAMES, FpsResampler, as_rate, output_frame_count
from i3d.video.transforms import UINT8_MAX, resize_flow_field, resize_frame, resized_size

FrameKind = Literal["rgb", "flow", "normalized"]

# Rate assumed for a video stream that declares none and has a single frame.
FALLBACK_FPS = 25
# A stream is reported as truncated when its packets end this much before the
# duration its header declares: more than 1 s and more than 5 % of it. (A cut
# through a packet is caught exactly: FFmpeg flags the packet corrupt. The
# header's frame count is no help: MP4 edit lists legitimately drop samples.)
TRUNCATION_SLACK_SECONDS = 1.0
TRUNCATION_SLACK_FRACTION = 0.05
# A stream is refused when its frames have fewer than 1/2 as many distinct
# timestamps as frames: its times say nothing of when most frames show. (A few
# repeated timestamps in a long video are a muxer's glitch; the fps rule drops
# those frames as it drops any two frames of one output slot.)
DEGENERATE_STAMPS_RATIO = 2
# The DISPLAYMATRIX side data is 3x3 int32 in 16.16 fixed point.
_DISPLAY_MATRIX_ONE = 1 << 16
# Tolerated float error on the [-1, 1] range of a NumPy input.
NORMALIZED_RANGE_TOLERANCE = 1e-5

_F = TypeVar("_F")


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive delivered frames.

    Attributes:
        frames: ``(t, H, W, C)``: uint8 RGB (``kind == "rgb"``), float32 flow
            in pixels (``"flow"``, C = 2) or float32 network input in
            ``[-1, 1]`` (``"normalized"``).
        start: index of the first of these frames in the delivered sequence.
        times: ``(t,)`` float64, seconds since the source's first frame.
    """

    frames: np.ndarray
    start: int
    times: np.ndarray


def check_file(path: str) -> None:
    """Raise :class:`VideoError` unless ``path`` is an existing, non-empty, readable file."""
    if not os.path.exists(path):
        raise VideoError(path, "no such file or folder")
    if os.path.isdir(path):
        raise VideoError(path, "is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "permission denied")


def _ffmpeg_cause(err: av.FFmpegError) -> str:
    return err.strerror or type(err).__name__


def _opencv_cause(err: cv2.error) -> str:
    """OpenCV's reason, e.g. ``(-4:Insufficient memory) Failed to allocate ...``,
    without the source file and line its message starts with."""
    text = " ".join(str(err).split())
    match = re.search(r"error: (\(.*)", text)
    return match[1] if match else text


@contextlib.contextmanager
def _frame_errors(path: str) -> Iterator[None]:
    """A frame that cannot be decoded or resized (a 20000x20000 JPEG under a
    memory limit) is a :class:`VideoError` naming ``path``, not OpenCV's or
    NumPy's exception, whichever command reads it."""
    try:
        yield
    except cv2.error as err:
        raise VideoError(path, f"cannot decode or resize a frame: {_opencv_cause(err)}") from None
    except MemoryError:
        raise VideoError(path, "out of memory decoding or resizing a frame") from None


class _Delivery(Generic[_F]):
    """Resamples source frames by timestamp and packs the delivered frames into chunks.

    ``load`` turns a source frame (a decoded picture, a file index) into its
    array and runs once per distinct source frame, only for frames that are
    delivered: the first ``skip`` output frames are counted, never loaded.
    """

    def __init__(
        self, rate: Fraction, start: Fraction, num_frames: int, load: Callable[[_F], np.ndarray], skip: int = 0
    ) -> None:
        self.resampler: FpsResampler[_F] = FpsResampler(rate, start, num_frames)
        self.load = load
        self._last: tuple[_F, np.ndarray] | None = None
        self.batch: list[np.ndarray] = []
        self.delivered = 0
        self.skip = skip

    def _array(self, frame: _F) -> np.ndarray:
        if self._last is None or self._last[0] is not frame:
            self._last = (frame, self.load(frame))
        return self._last[1]

    def push(self, frame: _F, time: Fraction, size: int) -> Iterator[FrameChunk]:
        yield from self._add(self.resampler.push(frame, time), size)

    def finish(self, size: int) -> Iterator[FrameChunk]:
        yield from self._add(self.resampler.finish(), size)
        if self.batch:
            yield self._flush()

    def _add(self, frames: list[_F], size: int) -> Iterator[FrameChunk]:
        for frame in frames:
            if self.delivered < self.skip:
                self.delivered += 1
                continue
            self.batch.append(self._array(frame))
            if len(self.batch) == size:
                yield self._flush()

    def _flush(self) -> FrameChunk:
        start = self.delivered
        count = len(self.batch)
        times = (start + np.arange(count)) / float(self.resampler.rate)
        chunk = FrameChunk(np.stack(self.batch), start, times)
        self.batch = []
        self.delivered += count
        return chunk


def check_start(start: int, num_frames: int) -> None:
    """Raise ``ValueError`` unless ``start`` is a frame index of a ``num_frames``-frame source."""
    if not 0 <= start < num_frames:
        raise ValueError(f"start must be in [0, {num_frames}), got {start}")


def check_chunk_size(size: int) -> None:
    """Raise ``ValueError`` unless ``size`` is a usable chunk size (>= 1)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")


# --------------------------------------------------------------------------- video files


@dataclass(frozen=True)
class _StreamScan:
    """What demuxing a video stream, without decoding it, tells about it."""

    index: int
    time_base: Fraction
    start: Fraction  # seconds, first frame
    end: Fraction  # seconds, last frame's timestamp plus its duration
    rate: Fraction  # nominal frame rate of the source
    packets: int
    timed_by_index: bool  # packets carry no timestamps: frame k is at k / rate


@dataclass(frozen=True)
class _Orientation:
    """How to turn a decoded picture into the displayed one (DISPLAYMATRIX)."""

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @staticmethod
    def of(frame: av.VideoFrame) -> _Orientation:
        for side_data in frame.side_data:
            if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                matrix = np.frombuffer(bytes(side_data), dtype="<i4")[:5] / _DISPLAY_MATRIX_ONE
                # FFmpeg maps a decoded pixel (p, q) to (a p + c q, b p + d q), y down.
                a, b, _, c, d = matrix
                if abs(a) < abs(b):
                    return _Orientation(transpose=True, flip_x=bool(c < 0), flip_y=bool(b < 0))
                return _Orientation(flip_x=bool(a < 0), flip_y=bool(d < 0))
        return _Orientation()

    def size(self, height: int, width: int) -> tuple[int, int]:
        return (width, height) if self.transpose else (height, width)

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_x:
            image = image[:, ::-1]
        if self.flip_y:
            image = image[::-1]
        return image


class _BestEffortClock:
    """Presentation time of decoded frames: FFmpeg's ``best_effort_timestamp`` rule.

    A frame's pts is used unless the decoded pts have gone backwards more often
    than the dts have (typical of AVI with B-frames), then its dts; a frame with
    neither follows its predecessor by one nominal frame interval.
    """

    def __init__(self, scan: _StreamScan) -> None:
        self.scan = scan
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.previous: Fraction | None = None
        self.count = 0

    def __call__(self, frame: av.VideoFrame) -> Fraction:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        stamp = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        if self.scan.timed_by_index:
            time = self.count / self.scan.rate
        elif stamp is not None:
            time = stamp * self.scan.time_base
        elif self.previous is not None:
            time = self.previous + 1 / self.scan.rate
        else:
            time = self.scan.start
        self.previous = time
        self.count += 1
        return time


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first video stream that is not a still (cover art)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _open(path: str) -> av.container.InputContainer:
    try:
        return av.open(path)
    except av.error.InvalidDataError:
        raise VideoError(path, "not a video file (FFmpeg cannot read its format)") from None
    except av.error.EOFError:
        raise VideoError(path, "the file ends before any frame (empty or truncated stream)") from None
    except av.FFmpegError as err:
        raise VideoError(path, f"cannot open: {_ffmpeg_cause(err)}") from None


def _scan_stream(path: str) -> _StreamScan:
    with _open(path) as container:
        stream = _video_stream(container)
        if stream is None:
            raise VideoError(path, "no video stream")
        time_base = Fraction(stream.time_base)
        first: int | None = None
        last: int | None = None
        last_duration = 0
        packets = discarded = 0
        untimed = False
        stamps: set[int] = set()
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_corrupt:
                    raise VideoError(path, f"truncated or corrupt stream (damaged packet #{packets + discarded + 1})")
                if packet.is_discard:  # before an edit list's start: decoded, never shown
                    discarded += 1
                    continue
                packets += 1
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    untimed = True
                    continue
                stamps.add(stamp)
                first = stamp if first is None else min(first, stamp)
                if last is None or stamp >= last:
                    last, last_duration = stamp, packet.duration or 0
        except av.FFmpegError as err:
            raise VideoError(path, f"truncated or corrupt stream ({_ffmpeg_cause(err)})") from None
        if packets < MIN_FRAMES:
            raise VideoError(path, f"no frames (at least {MIN_FRAMES} needed)")
        if len(stamps) * DEGENERATE_STAMPS_RATIO < packets and not untimed:
            # Resampling by time would keep one frame per timestamp: most of the video, silently gone.
            raise VideoError(
                path,
                f"broken timestamps: {packets} frames have only {len(stamps)} distinct time(s) (e.g. all at 0); "
                "re-time it by frame order, e.g. `ffmpeg -i IN -vf setpts=N/25/TB OUT` for 25 fps",
            )
        rate = _nominal_rate(stream, first, last, packets, time_base)
        if untimed or first is None or last is None:
            start, end = Fraction(0), packets / rate
        else:
            start = first * time_base
            end = last * time_base + (last_duration * time_base if last_duration > 0 else 1 / rate)
        declared = _declared_end(container, stream, time_base)
        slack = max(TRUNCATION_SLACK_SECONDS, TRUNCATION_SLACK_FRACTION * declared) if declared is not None else 0
        if declared is not None and declared - end > slack:
            cause = f"truncated stream: frames end at {float(end):.2f} s, the header says {float(declared):.2f} s"
            raise VideoError(path, cause)
        return _StreamScan(stream.index, time_base, start, end, rate, packets, untimed or first is None)


def _nominal_rate(
    stream: av.video.stream.VideoStream, first: int | None, last: int | None, packets: int, time_base: Fraction
) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return Fraction(rate)
    if first is not None and last is not None and last > first and packets > 1:
        return (packets - 1) / ((last - first) * time_base)
    return Fraction(FALLBACK_FPS)


def _declared_end(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, time_base: Fraction
) -> Fraction | None:
    """End time the header declares for the stream, where it declares one."""
    if stream.duration:
        return (stream.start_time or 0) * time_base + stream.duration * time_base
    if container.duration and len(container.streams) == 1:
        # Container duration and start are in microseconds (AV_TIME_BASE).
        return Fraction(container.duration + (container.start_time or 0), 1_000_000)
    return None


class VideoReader:
    """Streams the frames of a video file, resampled to a constant rate.

    Any container and codec FFmpeg decodes; high bit depth and grayscale
    sources come out as 8-bit RGB, and rotation metadata is applied, so
    frames are delivered as displayed.

    Args:
        path: the video file.
        fps: delivered frame rate; ``None`` keeps the source's nominal rate
            (its average frame rate).
        short_side: resize each frame so that its short side has this many
            pixels (:func:`~i3d.video.transforms.resize_frame`); ``None`` keeps
            the decoded size.

    Attributes:
        path, fps, num_frames: as for every reader; ``num_frames`` comes from
            the container's timestamps (no decoding) and the iteration always
            delivers exactly that many frames.
        short_side: as given; may be changed before iterating.
        frame_size: ``(H, W)`` of delivered frames.
        source_size: ``(H, W)`` of the displayed source.
        duration: seconds from the first frame to the end of the last.

    Raises:
        VideoError: the file is missing, empty, not a video, has no video
            stream, no frames, or a truncated or corrupt stream.
    """

    kind: FrameKind = "rgb"
    channels = 3

    def __init__(
        self, path: str | os.PathLike[str], fps: float | Fraction | None = None, *, short_side: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        check_file(self.path)
        self._scan = _scan_stream(self.path)
        self.rate = as_rate(fps) if fps is not None else self._scan.rate
        self.fps = float(self.rate)
        self.num_frames = output_frame_count(self._scan.start, self._scan.end, self.rate)
        self.duration = float(self._scan.end - self._scan.start)
        self.short_side = short_side
        with contextlib.closing(self._decode()) as decoded:
            first = next(decoded, None)
            if first is None:
                raise VideoError(self.path, "no frame could be decoded")
            picture = first[0]
            self._orientation = _Orientation.of(picture)
            self.source_size = self._orientation.size(picture.height, picture.width)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of delivered frames."""
        return resized_size(*self.source_size, self.short_side) if self.short_side else self.source_size

    def _decode(self) -> Iterator[tuple[av.VideoFrame, Fraction]]:
        """Decoded pictures with their presentation times, in presentation order."""
        clock = _BestEffortClock(self._scan)
        time = self._scan.start
        with _open(self.path) as container:
            stream = container.streams[self._scan.index]
            stream.thread_type = "AUTO"
            try:
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        time = clock(frame)
                        yield frame, time
            except av.FFmpegError as err:
                raise VideoError(
                    self.path, f"corrupt stream near {float(time - self._scan.start):.2f} s ({_ffmpeg_cause(err)})"
                ) from None

    def _load(self, frame: av.VideoFrame) -> np.ndarray:
        with _frame_errors(self.path):
            image = self._orientation.apply(frame.to_ndarray(format="rgb24"))
            if self.short_side:
                return resize_frame(image, self.short_side)
            return np.ascontiguousarray(image)

    def chunks(self, size: int, start: int = 0) -> Iterator[FrameChunk]:
        """Decode, resample and deliver the frames from ``start`` on, ``size``
        at a time (frames before ``start`` are decoded, not converted).

        Raises:
            VideoError: the stream turns out to be corrupt while decoding.
        """
        check_chunk_size(size)
        check_start(start, self.num_frames)
        delivery = _Delivery(self.rate, self._scan.start, self.num_frames, self._load, skip=start)
        for frame, time in self._decode():
            yield from delivery.push(frame, time, size)
            if delivery.resampler.done:
                break
        yield from delivery.finish(size)


# --------------------------------------------------------------------------- frame folders


class FrameFolderReader:
    """Streams a Charades-style frame folder.

    Layouts (``ID`` is the folder's name, numbering 1-based and contiguous,
    any number of digits; ``.png`` in place of ``.jpg`` too, one of the two
    per folder):

    * RGB: ``ID/ID-000001.jpg``, ``ID-000002.jpg``, ...
    * flow: ``ID/ID-000001x.jpg`` and ``ID-000001y.jpg``, ... grayscale, value
      ``255 * (f + 20) / 40``; delivered as float32 flow in pixels.

    Frame ``k`` (0-based) is at time ``k / source_fps``.

    Args:
        path: the folder.
        fps: delivered frame rate; ``None`` keeps ``source_fps``.
        source_fps: the rate the frames were extracted at (Charades: 24).
        short_side: resize frames so that the short side has this many pixels;
            a flow field's values are scaled with it.

    Raises:
        VideoError: no frames in the layout, a gap in the numbering, an x frame
            without its y frame, or a frame that cannot be read.
    """

    channels: int

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction | None = None,
        *,
        source_fps: float | Fraction = CHARADES_FPS,
        short_side: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise VideoError(self.path, "no such folder")
        self.kind, self._files = _list_frames(self.path)
        self.channels = 3 if self.kind == "rgb" else 2
        source_rate = as_rate(source_fps)
        self.rate = as_rate(fps) if fps is not None else source_rate
        self.fps = float(self.rate)
        self._source_rate = source_rate
        count = len(self._files)
        self.num_frames = output_frame_count(Fraction(0), count / source_rate, self.rate)
        self.duration = float(count / source_rate)
        self.short_side = short_side
        self.source_size: tuple[int, int] = self._read(0).shape[:2]

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of delivered frames."""
        return resized_size(*self.source_size, self.short_side) if self.short_side else self.source_size

    def _read(self, index: int) -> np.ndarray:
        names = self._files[index]
        images = []
        for name in names:
            flag = cv2.IMREAD_COLOR if self.kind == "rgb" else cv2.IMREAD_GRAYSCALE
            with _frame_errors(os.path.join(self.path, name)):
                image = cv2.imread(os.path.join(self.path, name), flag)
                if image is None:
                    raise VideoError(os.path.join(self.path, name), "cannot read frame image")
                if self.kind == "rgb":
                    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            images.append(image)
        if self.kind == "rgb":
            return images[0]
        if images[0].shape != images[1].shape:
            raise VideoError(os.path.join(self.path, names[1]), f"size differs from {names[0]}")
        return flow_from_jpeg_values(np.stack(images, axis=-1))

    def _load(self, index: int) -> np.ndarray:
        image = self._read(index)
        if image.shape[:2] != tuple(self.source_size):
            height, width = self.source_size
            raise VideoError(
                os.path.join(self.path, self._files[index][0]),
                f"frame is {image.shape[1]}x{image.shape[0]}, earlier frames are {width}x{height}",
            )
        if not self.short_side:
            return image
        with _frame_errors(os.path.join(self.path, self._files[index][0])):
            if self.kind == "flow":
                return resize_flow_field(image, self.frame_size)
            return resize_frame(image, self.short_side)

    def chunks(self, size: int, start: int = 0) -> Iterator[FrameChunk]:
        """Read, resample and deliver the frames from ``start`` on, ``size`` at
        a time (files before ``start`` are not read)."""
        check_chunk_size(size)
        check_start(start, self.num_frames)
        delivery = _Delivery(self.rate, Fraction(0), self.num_frames, self._load, skip=start)
        for index in range(len(self._files)):
            yield from delivery.push(index, index / self._source_rate, size)
            if delivery.resampler.done:
                break
        yield from delivery.finish(size)


def _list_frames(folder: str) -> tuple[FrameKind, list[tuple[str, ...]]]:
    """The folder's layout and its frame files in order: ``[(rgb,)]`` or ``[(x, y)]``."""
    name = os.path.basename(os.path.normpath(folder))
    pattern = re.compile(rf"{re.escape(name)}-(\d+)([xy]?)\.({'|'.join(FRAME_SUFFIXES)})")
    rgb: dict[int, str] = {}
    flow: dict[str, dict[int, str]] = {"x": {}, "y": {}}
    width = 0
    suffixes = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            number, axis = int(match[1]), match[2]
            width = max(width, len(match[1]))
            suffixes.add(match[3])
            (flow[axis] if axis else rgb)[number] = entry.name
    if rgb and (flow["x"] or flow["y"]):
        raise VideoError(folder, f"mixes RGB frames ({name}-N.jpg) and flow frames ({name}-Nx.jpg)")
    if not rgb and not flow["x"] and not flow["y"]:
        raise VideoError(
            folder,
            f"no frames named {name}-000001.jpg (RGB) or {name}-000001x.jpg and {name}-000001y.jpg (flow), "
            "numbered from 1, .jpg or .png; the name before the number is the folder's",
        )
    if len(suffixes) > 1:
        raise VideoError(folder, f"mixes .jpg and .png frames ({name}-N.jpg and {name}-N.png); keep one kind")
    (suffix,) = suffixes

    def frame_name(number: int, axis: str = "") -> str:
        return f"{name}-{number:0{width}d}{axis}.{suffix}"

    def check_contiguous(numbers: dict[int, str], axis: str = "") -> int:
        count = max(numbers)
        if min(numbers) < 1:
            raise VideoError(folder, f"frame numbering must start at 1, found {frame_name(min(numbers), axis)}")
        if len(numbers) != count:
            missing = next(k for k in range(1, count + 1) if k not in numbers)
            raise VideoError(folder, f"gap in the frame numbering: {frame_name(missing, axis)} is missing")
        return count

    if rgb:
        count = check_contiguous(rgb)
        return "rgb", [(rgb[k],) for k in range(1, count + 1)]
    for axis, other in (("x", "y"), ("y", "x")):
        lonely = sorted(set(flow[axis]) - set(flow[other]))
        if lonely:
            missing, present = frame_name(lonely[0], other), frame_name(lonely[0], axis)
            raise VideoError(folder, f"{missing} is missing (its {present} exists)")
    count = check_contiguous(flow["x"], "x")
    return "flow", [(flow["x"][k], flow["y"][k]) for k in range(1, count + 1)]


# --------------------------------------------------------------------------- NumPy arrays


def _load_npy(path: str) -> np.ndarray:
    """Memory-map a ``.npy`` (no pickles), or raise :class:`VideoError` naming it."""
    check_file(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise VideoError(path, f"not a readable .npy file ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise VideoError(path, "not a .npy array")
    return array


class NpyReader:
    """Streams a ``.npy`` of network input in DeepMind's sample layout.

    The array is ``(1, T, H, W, C)`` float, already preprocessed (values in
    ``[-1, 1]``, C = 3 for RGB, 2 for flow); it is memory-mapped and delivered
    as is, with no resampling (``fps`` is ``None``).

    Args:
        path: the ``.npy`` file.
        channels: expected C, if known.

    Raises:
        VideoError: not a readable ``.npy``, the wrong layout or channel
            count, no frames, or (while iterating) values outside ``[-1, 1]``.
    """

    kind: FrameKind = "normalized"
    fps: float | None = None

    def __init__(self, path: str | os.PathLike[str], *, channels: int | None = None) -> None:
        self.path = os.fspath(path)
        self._array = _load_npy(self.path)
        shape = self._array.shape
        if self._array.ndim != 5 or shape[0] != 1 or shape[-1] not in (2, 3):
            raise VideoError(self.path, f"expected an array of shape (1, T, H, W, C) with C = 3 or 2, got {shape}")
        if not np.issubdtype(self._array.dtype, np.floating):
            raise VideoError(self.path, f"expected float values in [-1, 1], got dtype {self._array.dtype}")
        if channels is not None and shape[-1] != channels:
            raise VideoError(self.path, f"expected {channels} channels, the array has {shape[-1]}")
        self.num_frames = shape[1]
        if self.num_frames < MIN_FRAMES:
            raise VideoError(self.path, f"no frames (at least {MIN_FRAMES} needed)")
        self.channels = shape[-1]
        self.frame_size = shape[2:4]
        self.source_size = self.frame_size

    def chunks(self, size: int, start: int = 0) -> Iterator[FrameChunk]:
        """Deliver ``(t, H, W, C)`` float32 chunks of the array from frame ``start`` on."""
        check_chunk_size(size)
        check_start(start, self.num_frames)
        limit = 1 + NORMALIZED_RANGE_TOLERANCE
        for first in range(start, self.num_frames, size):
            frames = np.array(self._array[0, first : first + size], dtype=np.float32)
            if not np.all(np.abs(frames) <= limit):
                last = first + len(frames) - 1
                raise VideoError(self.path, f"values outside [-1, 1] (or not finite) in frames {first}..{last}")
            yield FrameChunk(frames, first, np.full(len(frames), np.nan))


class FlowArrayReader:
    """Streams flow saved as ``.npy`` by :func:`~i3d.video.flow.write_flow_frames`.

    The array is ``(T, H, W, 2)`` float16 flow in pixels, memory-mapped and
    delivered as float32 without resampling.

    Args:
        path: the ``.npy`` file.
        fps: the rate the flow was computed at, reported as ``fps``.

    Raises:
        VideoError: not a readable ``.npy`` of that layout, or no frames.
    """

    kind: FrameKind = "flow"
    channels = 2

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = os.fspath(path)
        self._array = _load_npy(self.path)
        if self._array.ndim != 4 or self._array.shape[-1] != 2:
            raise VideoError(self.path, f"expected flow of shape (T, H, W, 2), got {self._array.shape}")
        self.num_frames = self._array.shape[0]
        if self.num_frames < MIN_FRAMES:
            raise VideoError(self.path, f"no frames (at least {MIN_FRAMES} needed)")
        self.fps = fps
        self.frame_size = self._array.shape[1:3]
        self.source_size = self.frame_size

    def chunks(self, size: int, start: int = 0) -> Iterator[FrameChunk]:
        """Deliver ``(t, H, W, 2)`` float32 chunks from frame ``start`` on."""
        check_chunk_size(size)
        check_start(start, self.num_frames)
        for first in range(start, self.num_frames, size):
            frames = np.array(self._array[first : first + size], dtype=np.float32)
            times = (first + np.arange(len(frames))) / self.fps if self.fps else np.full(len(frames), np.nan)
            yield FrameChunk(frames, first, times)


# --------------------------------------------------------------------------- DeepMind's sample GIFs


def read_sample_gif(path: str | os.PathLike[str], modality: Literal["rgb", "flow"] = "rgb") -> np.ndarray:
    """Read one of DeepMind's sample GIFs back into network input.

    ``v_CricketShot_g04_c01_rgb.gif`` holds RGB input rescaled from ``[-1, 1]``
    to ``[0, 1]``; ``_flow.gif`` holds flow input with a zero third channel
    and 0.5 added. This undoes that: RGB ``2 * g / 255 - 1``, flow
    ``g / 255 - 0.5`` for the first two channels.

    Returns:
        ``(1, T, H, W, C)`` float32 in ``[-1, 1]``, C = 3 (rgb) or 2 (flow):
        DeepMind's ``.npy`` sample layout.
    """
    reader = VideoReader(path)
    frames = np.concatenate([chunk.frames for chunk in reader.chunks(reader.num_frames)]).astype(np.float32)
    frames /= UINT8_MAX
    if modality == "rgb":
        out = 2.0 * frames - 1.0
    elif modality == "flow":
        out = frames[..., :2] - 0.5
    else:
        raise ValueError(f"modality must be 'rgb' or 'flow', got {modality!r}")
    return out[np.newaxis]
