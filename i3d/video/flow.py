"""TV-L1 optical flow, as DeepMind computed it for I3D's flow stream, and flow files.

Flow is OpenCV's Dual TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``)
between consecutive grayscale frames, after the frames are resampled to the
network's frame rate and resized so that their short side is 256 (the
preset's ``resize_short_side``). DeepMind's README describes "a TV-L1 optical
flow algorithm, similar to this code from OpenCV" without parameters; these
are OpenCV's defaults.

**T frames give T flow fields.** Field ``t`` is the flow from frame ``t`` to
frame ``t + 1`` for ``t < T - 1``; the last field repeats field ``T - 2``, so
that flow clips line up frame for frame with RGB clips of the same video.
Flow needs at least :data:`MIN_FLOW_FRAMES` frames. Two identical frames (a
repeated frame after frame-rate conversion) give a zero field without running
TV-L1.

Fields are ``(H, W, 2)`` float32 arrays of displacements in pixels, x then y.
They are stored in one of two layouts under an output folder ``OUT``:

* ``"jpg"``: Charades' layout ``OUT/NAME/NAME-000001x.jpg`` and
  ``NAME-000001y.jpg`` (1-based), grayscale, value
  ``round(255 * (f + 20) / 40)`` clipped to ``0..255``, i.e. flow clipped to
  +-20 px in steps of 40/255 px. JPEG quality 100 keeps the round trip within
  one grey level.
* ``"npy"``: ``OUT/NAME.npy``, float16 ``(T, H, W, 2)``, unclipped.

Two engines compute the same fields (:data:`FLOW_ENGINES`):

* ``"torch"`` (the default): :mod:`i3d.video.tvl1`, OpenCV's algorithm in
  PyTorch, through ``torch.compile`` where it works, on batches of pairs:
  on a GPU in this process, on the CPU on ``workers`` processes of one
  thread each (threads that wait on each other stall whenever other
  processes take the cores; processes do not). Its fields agree with
  OpenCV's to rounding (``benchmarks/bench_flow.py``).
* ``"opencv"``: OpenCV's ``DualTVL1OpticalFlow`` on ``workers`` processes,
  one frame pair per task.

Both keep a bounded number of tasks in flight, so that memory does not grow
with the video.

A worker that dies (killed, out of memory) or a failure of either engine
raises :class:`FlowWorkerError`; the engine starts a fresh pool for the next
video.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from i3d.atomic import atomic_dir, atomic_path
from i3d.choices import DEFAULT_FLOW_ENGINE, FLOW_ENGINES, FLOW_FORMATS, FlowEngineName, FlowFormat
from i3d.errors import I3DError
from i3d.video.tvl1 import TVL1Params, tvl1_flow_batch

MIN_FLOW_FRAMES = 2
# Charades flow JPEGs map [-FLOW_JPEG_BOUND, FLOW_JPEG_BOUND] px onto 0..255.
FLOW_JPEG_BOUND = 20.0
FLOW_JPEG_MAX = 255
# Quality 95 (OpenCV's default) changes TV-L1 fields by up to ~9 grey levels,
# 98 by 3; 100 keeps every pixel within one.
JPEG_QUALITY = 100
_JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
NPY_DTYPE = np.float16
# Tasks (a pair for OpenCV, a batch for torch) queued per worker: enough to
# keep every worker busy while the reader decodes the next frames, few
# enough to bound memory.
TASKS_IN_FLIGHT_PER_WORKER = 2

# Pairs per torch batch. On the CPU a few pairs keep the working set near the
# caches (and per-pair stopping makes larger batches no faster); a GPU needs
# many pairs to fill it (64 pairs at 256x341 hold ~0.8 GB).
TORCH_BATCH_CPU = 4
TORCH_BATCH_GPU = 64
# On the CPU, frames smaller than this run without torch.compile: compiling
# takes tens of seconds once per process (less from inductor's disk cache)
# and pays off over many large frames, not over a few small ones.
COMPILE_MIN_PIXELS = 128 * 128


class FlowWorkerError(I3DError):
    """TV-L1 could not be computed: a worker process died, or OpenCV failed.

    The message names no file (the engine sees frames, not files); callers
    that know the video, such as :func:`i3d.video.compute_flow`, re-raise it
    as a :class:`~i3d.errors.VideoError` naming it.
    """


def to_gray(frame: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 to grayscale ``(H, W)`` uint8 (ITU-R BT.601 luma)."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def create_tvl1() -> cv2.DenseOpticalFlow:
    """OpenCV's Dual TV-L1 with its default parameters."""
    return cv2.optflow.DualTVL1OpticalFlow_create()


def tvl1_flow(prev: np.ndarray, current: np.ndarray, algorithm: cv2.DenseOpticalFlow | None = None) -> np.ndarray:
    """TV-L1 flow from ``prev`` to ``current``, both ``(H, W)`` uint8 grayscale.

    Args:
        prev, current: consecutive frames.
        algorithm: a :func:`create_tvl1` instance to reuse; a new one if ``None``.

    Returns:
        ``(H, W, 2)`` float32 ``f``: ``current[y + f[y, x, 1], x + f[y, x, 0]] ~ prev[y, x]``;
        exactly zero for identical frames.
    """
    if np.array_equal(prev, current):
        return np.zeros((*prev.shape, 2), np.float32)
    algorithm = algorithm or create_tvl1()
    # OpenCV lowers its scale count for good when a frame is too small for
    # the pyramid; a reused instance would then run later frames on fewer scales.
    algorithm.setScalesNumber(TVL1Params.scales)
    return algorithm.calc(prev, current, None)


def torch_fields(
    pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device, compile: bool = True
) -> list[np.ndarray]:
    """The torch engine's fields of ``pairs`` of ``(H, W)`` uint8 frames, as one batch.

    Identical frames give zero without running TV-L1, as :func:`tvl1_flow`
    does. ``compile`` applies on a GPU, and on the CPU to frames of at least
    :data:`COMPILE_MIN_PIXELS`.

    Raises:
        FlowWorkerError: frames of different sizes, or torch failed (out of memory, a device error).
    """
    sizes = sorted({frame.shape for pair in pairs for frame in pair})
    if len(sizes) > 1:
        (h0, w0), (h1, w1) = sizes[:2]
        raise FlowWorkerError(f"TV-L1 failed: frames of different size, {w0}x{h0} and {w1}x{h1}")
    fields = [np.zeros((*prev.shape, 2), np.float32) for prev, _ in pairs]
    moving = [i for i, (prev, current) in enumerate(pairs) if not np.array_equal(prev, current)]
    if not moving:
        return fields
    try:
        prev = torch.from_numpy(np.stack([pairs[i][0] for i in moving])).to(device)
        current = torch.from_numpy(np.stack([pairs[i][1] for i in moving])).to(device)
        compile = compile and (device.type != "cpu" or prev[0].numel() >= COMPILE_MIN_PIXELS)
        computed = tvl1_flow_batch(prev, current, compile=compile).cpu().numpy()
    except (RuntimeError, ValueError) as err:
        cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise FlowWorkerError(f"TV-L1 failed: {cause}") from None
    for i, field in zip(moving, computed):
        fields[i] = field
    return fields


_worker_algorithm: cv2.DenseOpticalFlow | None = None


def _init_worker() -> None:
    global _worker_algorithm
    # One thread per process: the processes already use every core (and
    # threads that wait on each other stall when other processes take the cores).
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _worker_algorithm = create_tvl1()


def _worker_task(engine: FlowEngineName, pairs: list[tuple[np.ndarray, np.ndarray]], compile: bool) -> list[np.ndarray]:
    if engine == "torch":
        return torch_fields(pairs, torch.device("cpu"), compile)
    return [tvl1_flow(prev, current, _worker_algorithm) for prev, current in pairs]


def default_flow_device() -> torch.device:
    """Where the torch engine runs by default: the first GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_workers() -> int:
    """Worker processes to use by default: the CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_flow_engine(name: str) -> FlowEngineName:
    """``name`` if it names a flow engine, else ``ValueError``."""
    if name not in FLOW_ENGINES:
        raise ValueError(f"flow engine must be one of {', '.join(FLOW_ENGINES)}, got {name!r}")
    return name  # type: ignore[return-value]


class FlowEngine:
    """Computes TV-L1 flow fields for frame sequences.

    One engine can serve many videos (an OpenCV pool starts on first use).
    Use it as a context manager, or call :meth:`close`. An engine pickles as
    its settings alone, so a dataset holding one can go to ``DataLoader``
    workers: each copy starts its own pool (or, with ``workers=1``, runs
    TV-L1 in the worker itself) when first used.

    Args:
        workers: processes on the CPU (``None``: every available core); with
            1, flow runs in this process (one thread for torch; OpenCV's own
            threads apply). The torch engine on a GPU runs in this process.
        engine: ``"torch"`` or ``"opencv"`` (see the module docstring).
        device: the torch engine's device (default: ``cuda`` if available,
            else the CPU); on a GPU, flow shares the device with the network.
        batch_size: pairs per torch batch (default :data:`TORCH_BATCH_CPU`,
            :data:`TORCH_BATCH_GPU` on a GPU); fields do not depend on it.
        compile: run the torch engine through ``torch.compile`` (on the CPU
            for frames of at least :data:`COMPILE_MIN_PIXELS`; falls back to
            plain PyTorch with a warning where compiling fails).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        engine: str = DEFAULT_FLOW_ENGINE,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        compile: bool = True,
    ) -> None:
        self.engine = check_flow_engine(engine)
        self.workers = default_workers() if workers is None else workers
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self.device = torch.device(device) if device is not None else default_flow_device()
        self.batch_size = batch_size or (TORCH_BATCH_GPU if self.device.type == "cuda" else TORCH_BATCH_CPU)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.compile = compile
        self._pool: ProcessPoolExecutor | None = None
        self._algorithm: cv2.DenseOpticalFlow | None = None

    def __enter__(self) -> FlowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A pool and an OpenCV algorithm belong to one process; a copy makes its own.
        keys = ("engine", "workers", "device", "batch_size", "compile")
        return {key: getattr(self, key) for key in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool = None
        self._algorithm = None

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def _inline(self) -> bool:
        """Whether tasks run in this process: one worker, or the torch engine on a GPU."""
        return self.workers == 1 or (self.engine == "torch" and self.device.type != "cpu")

    def _submit(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Future | list[np.ndarray]:
        """One task: a pair (OpenCV) or a batch of pairs (torch)."""
        if self._inline:
            with self._failures():
                if self.engine == "opencv":
                    if self._algorithm is None:
                        self._algorithm = create_tvl1()
                    return [tvl1_flow(prev, current, self._algorithm) for prev, current in pairs]
                if self.device.type != "cpu":
                    return torch_fields(pairs, self.device, self.compile)
                threads = torch.get_num_threads()
                try:
                    torch.set_num_threads(1)  # workers=1: one core, as for OpenCV
                    return torch_fields(pairs, self.device, self.compile)
                finally:
                    torch.set_num_threads(threads)
        if self._pool is None:
            # spawn: forking a process that runs torch/OpenCV thread pools can deadlock.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker)
        with self._failures():
            return self._pool.submit(_worker_task, self.engine, pairs, self.compile)

    def _result(self, item: Future | list[np.ndarray]) -> list[np.ndarray]:
        if isinstance(item, list):
            return item
        with self._failures():
            return item.result()

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Turn a dead pool or an OpenCV error into :class:`FlowWorkerError`."""
        try:
            yield
        except BrokenProcessPool:
            # The pool cannot be used again; the next video starts a fresh one.
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            raise FlowWorkerError("TV-L1 worker process died (killed, or out of memory?)") from None
        except cv2.error as err:
            cause = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            raise FlowWorkerError(f"TV-L1 failed: {cause}") from None

    def fields(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Flow fields for a stream of frames, in order.

        Args:
            frames: ``T >= 2`` grayscale ``(H, W)`` uint8 frames.

        Yields:
            ``T`` fields ``(H, W, 2)`` float32 (see the module docstring for
            how the last one is made). Fields are computed only as far ahead
            as the engine needs: one torch batch, or what keeps the OpenCV
            workers busy (nothing ahead with ``workers=1``); a consumer that
            stops early cancels the tasks not yet started.

        Raises:
            FlowWorkerError: a worker process died, or OpenCV or torch failed.
        """
        # A task is one pair for OpenCV, a batch of pairs for torch.
        task_size = self.batch_size if self.engine == "torch" else 1
        pending: collections.deque[Future | list[np.ndarray]] = collections.deque()
        # In this process a task is computed when submitted: nothing to gain from computing ahead.
        max_pending = 1 if self._inline else self.workers * TASKS_IN_FLIGHT_PER_WORKER
        prev: np.ndarray | None = None
        last: np.ndarray | None = None
        task: list[tuple[np.ndarray, np.ndarray]] = []
        try:
            for frame in frames:
                if prev is not None:
                    task.append((prev, frame))
                    if len(task) == task_size:
                        pending.append(self._submit(task))
                        task = []
                    while len(pending) >= max_pending:
                        for last in self._result(pending.popleft()):
                            yield last
                prev = frame
            if task:
                pending.append(self._submit(task))
            while pending:
                for last in self._result(pending.popleft()):
                    yield last
        finally:
            # A consumer that stops early (or an error) leaves the pool free for the next video.
            for item in pending:
                if isinstance(item, Future):
                    item.cancel()
        if last is None:
            raise ValueError(f"flow needs at least {MIN_FLOW_FRAMES} frames")
        yield last.copy()


def flow_to_jpeg_values(field: np.ndarray) -> np.ndarray:
    """Flow ``(..., 2)`` in pixels to Charades grey levels ``round(255 * (f + 20) / 40)``, uint8."""
    scale = FLOW_JPEG_MAX / (2 * FLOW_JPEG_BOUND)
    values = np.rint((np.asarray(field, np.float32) + FLOW_JPEG_BOUND) * scale)
    return np.clip(values, 0, FLOW_JPEG_MAX).astype(np.uint8)


def flow_from_jpeg_values(values: np.ndarray) -> np.ndarray:
    """Charades grey levels (uint8) back to flow in pixels, float32: ``v * 40 / 255 - 20``."""
    return values.astype(np.float32) * (2 * FLOW_JPEG_BOUND / FLOW_JPEG_MAX) - FLOW_JPEG_BOUND


def flow_frame_names(name: str, index: int) -> tuple[str, str]:
    """File names of the x and y JPEGs of 0-based frame ``index`` (numbered from 1 on disk)."""
    stem = f"{name}-{index + 1:06d}"
    return f"{stem}x.jpg", f"{stem}y.jpg"


def flow_output_path(out_dir: str | os.PathLike[str], name: str, format: FlowFormat) -> Path:
    """Where :func:`write_flow_frames` puts the flow of ``name``: a folder (jpg) or a ``.npy``."""
    out = Path(out_dir)
    if format == "jpg":
        return out / name
    if format == "npy":
        return out / f"{name}.npy"
    raise ValueError(f"flow format must be one of {FLOW_FORMATS}, got {format!r}")


def find_flow_output(out_dir: str | os.PathLike[str], name: str) -> Path | None:
    """The stored flow of ``name`` under ``out_dir`` (``.npy`` preferred), or ``None``."""
    for format in ("npy", "jpg"):
        path = flow_output_path(out_dir, name, format)
        if path.exists():
            return path
    return None


class _Discarded(Exception):
    """Thrown into an atomic_path / atomic_dir block to discard its output."""


class FlowWriter:
    """Writes flow fields one at a time; the output appears only on :meth:`commit`.

    The output is assembled under a hidden temporary name next to its final
    place and moved there once complete (replacing an older one; see
    :func:`i3d.atomic.atomic_path` and :func:`i3d.atomic.atomic_dir`), so
    nothing is ever half-written. Leaving the ``with`` block without
    committing, or calling :meth:`abort`, removes the temporary output.

    Args:
        out_dir: output folder (created if missing).
        name: the video's name (file stem); see :func:`flow_output_path`.
        format: ``"jpg"`` or ``"npy"`` (see the module docstring).
        num_frames: the number of fields to come; required for ``"npy"`` (the
            array is preallocated), checked by :meth:`commit` for both.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        name: str,
        *,
        format: FlowFormat = "jpg",
        num_frames: int | None = None,
    ) -> None:
        self.target = flow_output_path(out_dir, name, format)
        if format == "npy" and num_frames is None:
            raise ValueError("num_frames is required to write .npy flow")
        self.name = name
        self.format = format
        self.num_frames = num_frames
        self.count = 0
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # The block stays open from here to commit() or abort().
        self._output = atomic_dir(self.target) if format == "jpg" else atomic_path(self.target)
        self._tmp: Path = self._output.__enter__()
        self._array: np.memmap | None = None
        self._open = True

    def __enter__(self) -> FlowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def add(self, field: np.ndarray) -> None:
        """Append the next field, ``(H, W, 2)`` float32 in pixels."""
        if self.num_frames is not None and self.count >= self.num_frames:
            raise ValueError(f"more than the announced {self.num_frames} flow fields")
        if self.format == "jpg":
            values = flow_to_jpeg_values(field)
            for channel, file_name in enumerate(flow_frame_names(self.name, self.count)):
                path = self._tmp / file_name
                if not cv2.imwrite(str(path), np.ascontiguousarray(values[..., channel]), _JPEG_PARAMS):
                    raise OSError(f"{path}: cannot write JPEG")
        else:
            if self._array is None:
                shape = (self.num_frames, *field.shape)
                self._array = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=NPY_DTYPE, shape=shape)
                # Reserve the blocks before any page is touched: on a full disk a
                # sparse map would die of SIGBUS at the first write; this raises ENOSPC.
                with open(self._tmp, "rb+") as f:
                    os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            self._array[self.count] = field
        self.count += 1

    def commit(self) -> Path:
        """Check the count, move the output into place and return its path."""
        if self.num_frames is not None and self.count != self.num_frames:
            raise ValueError(f"expected {self.num_frames} flow fields, got {self.count}")
        if self.count == 0:
            raise ValueError("no flow fields to write")
        if self._array is not None:
            self._array.flush()
            self._array = None
        self._open = False
        self._output.__exit__(None, None, None)
        return self.target

    def abort(self) -> None:
        """Remove the temporary output, unless committed."""
        if self._open:
            self._array = None
            self._open = False
            discard = _Discarded()
            self._output.__exit__(type(discard), discard, None)


def write_flow_frames(
    fields: Iterable[np.ndarray],
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    format: FlowFormat = "jpg",
    num_frames: int | None = None,
) -> Path:
    """Write flow fields as Charades-style JPEGs or one float16 ``.npy``.

    Nothing is half-written (see :class:`FlowWriter`); on any error the
    temporary output is removed and the error propagates.

    Args:
        fields: ``(H, W, 2)`` float32 fields in pixels, streamed.
        out_dir, name, format, num_frames: as for :class:`FlowWriter`.

    Returns:
        The output folder (jpg) or file (npy), see :func:`flow_output_path`.
    """
    with FlowWriter(out_dir, name, format=format, num_frames=num_frames) as writer:
        for field in fields:
            writer.add(field)
        return writer.commit()
